"""Click command groups: parse, call a workflow, render. No boto3 and no Ansible here."""
