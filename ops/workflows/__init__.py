"""Operations as plan() -> Plan and run(plan) -> Report: patch, docker, deploy, logs."""
