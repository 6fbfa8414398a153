"""An offline installer for a Raspberry Pi hub: ``biomoe deploy build``.

The hub beside the patient has no network, so everything it needs travels in
one archive built on a workstation (:mod:`edge.deploy.archive`): a wheelhouse
for the hub's CPU and each supported Python, pinned with SHA-256 hashes
(:mod:`edge.deploy.wheelhouse`), the bundle, the monitor's settings, the
systemd unit for review, and ``install.sh``, which installs it all with
``pip --no-index`` (:mod:`edge.deploy.targets` says what a target is).
"""
