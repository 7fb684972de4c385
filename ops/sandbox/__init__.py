"""The local fleet: moto, the Run Command emulator, container hosts and faults."""
