rule run_shard:
    """One long-lived worker: drains its shard, steals from others, re-runs tasks of dead workers.

    Its output is a per-shard summary, never the result.json files: Snakemake deletes a job's
    outputs before re-running it, and those are the durable record.
    """
    input:
        staged=f"{CAMPAIGN_DIR}/{{run}}/staged.json",
    output:
        record=f"{CAMPAIGN_DIR}/{{run}}/shards/{{shard}}.json",
    log:
        f"{CAMPAIGN_DIR}/{{run}}/logs/run_shard/{{shard}}.log",
    threads: run_setting("cores")
    resources:
        mem_mb=run_setting("memory_mb"),
        runtime=run_setting("walltime_min"),
        partition=run_setting("partition"),
        account=run_setting("account"),
        array_throttle=run_setting("max_running_shards"),
    params:
        run_dir=run_dir_of,
        python=PYTHON,
    shell:
        "{params.python} -m pipe_rules work {params.run_dir} --shard {wildcards.shard}"
        " --record {output.record} > {log} 2>&1"
