rule ingest_run:
    """Reconcile, finish stragglers, and write one results document keyed by owner."""
    input:
        shards=shard_records,
        staged=f"{CAMPAIGN_DIR}/{{run}}/staged.json",
    output:
        records=f"{CAMPAIGN_DIR}/{{run}}/results/records.json",
    log:
        f"{CAMPAIGN_DIR}/{{run}}/logs/ingest_run.log",
    localrule: True
    conda:
        "../envs/pipe_rules.yaml"
    params:
        run_dir=run_dir_of,
        python=PYTHON,
    shell:
        "{params.python} -m pipe_rules ingest {params.run_dir} > {log} 2>&1"
