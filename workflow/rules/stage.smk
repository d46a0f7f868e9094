rule stage_run:
    """Write specs, states and queue tokens of one run (idempotent; never overwrites results)."""
    input:
        upstream=stage_inputs,
        fingerprint=fingerprint_of,
    output:
        staged=f"{CAMPAIGN_DIR}/{{run}}/staged.json",
    log:
        f"{CAMPAIGN_DIR}/{{run}}/logs/stage_run/{{run}}.log",
    localrule: True
    params:
        configfile=PLAN.config_file,
    script:
        "../../scripts/stage_run.py"
