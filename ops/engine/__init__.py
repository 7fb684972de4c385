"""The runtime every workflow shares: plan (waves of hosts, named steps), the fan-out
scheduler, the failure budget, gates, journal writes, signals and resume.

A workflow builds an ops.engine.plan.Plan and hands it to
ops.engine.runtime.Runtime; its CLI registers a resumer for its run kind with
ops.engine.resume.register_resumer. No policy lives in the transports.
"""
