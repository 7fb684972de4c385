"""The fleet: hosts, target expressions, discovery, platform facts and inventories."""
