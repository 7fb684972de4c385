"""fleetops: the `ops` toolkit for patch nights, Docker installs, deploys and logs on EC2 fleets."""

__version__ = "0.1.0"
