rule ingest_run:
    """Reconcile and write the results (one line per owner in records.jsonl, summary.json last),
    and the run's HTML report beside them. Runs on the submit host and never runs a task:
    unfinished work is handed back to the cluster (the shards' summaries are removed, so the
    next pass submits elements for them).
    """
    input:
        shards=shard_records,
        staged=f"{CAMPAIGN_DIR}/{{run}}/staged.json",
    output:
        summary=f"{CAMPAIGN_DIR}/{{run}}/results/summary.json",
        report=f"{CAMPAIGN_DIR}/{{run}}/results/report.html",
    log:
        f"{CAMPAIGN_DIR}/{{run}}/logs/ingest_run/{{run}}.log",
    localrule: True
    params:
        run_dir=run_dir_of,
        python=PYTHON,
    shell:
        "{params.python} -m pipe_rules ingest {params.run_dir} --report > {log} 2>&1"
