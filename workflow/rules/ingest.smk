rule ingest_run:
    """Reconcile, finish stragglers, write one results document keyed by owner, and the run's
    HTML report (summary, per-owner table, plots) beside it."""
    input:
        shards=shard_records,
        staged=f"{CAMPAIGN_DIR}/{{run}}/staged.json",
    output:
        records=f"{CAMPAIGN_DIR}/{{run}}/results/records.json",
        report=f"{CAMPAIGN_DIR}/{{run}}/results/report.html",
    log:
        f"{CAMPAIGN_DIR}/{{run}}/logs/ingest_run.log",
    localrule: True
    conda:
        "../envs/pipe_rules.yaml"
    params:
        run_dir=run_dir_of,
        python=PYTHON,
    shell:
        "{params.python} -m pipe_rules ingest {params.run_dir} --report > {log} 2>&1"
