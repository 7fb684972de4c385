"""How work reaches hosts (SSM Run Command, SSH, Ansible). Transports never decide policy."""
