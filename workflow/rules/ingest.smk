rule ingest_run:
    """Reconcile, finish stragglers, and write one results document keyed by owner."""
    input:
        shards=shard_records,
    output:
        records=f"{CAMPAIGN_DIR}/{{run}}/results/records.json",
    log:
        f"{CAMPAIGN_DIR}/{{run}}/logs/ingest_run.log",
    params:
        run_dir=f"{CAMPAIGN_DIR}/{{run}}",
        python=PYTHON,
    localrule: True
    conda:
        "../envs/pipe_rules.yaml"
    shell:
        "{params.python} -m pipe_rules ingest {params.run_dir} > {log} 2>&1"
