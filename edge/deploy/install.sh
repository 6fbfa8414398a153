#!/bin/sh
# Install the Tiny-BioMoE Edge monitor on a hub from this folder, with no network.
#
#   sudo ./install.sh                  install (run again: repairs the same release)
#   sudo ./install.sh --upgrade        this release over the installed one; keeps the settings and the
#                                      database, and rolls back if the new release fails its self-check
#   sudo ./install.sh --uninstall      remove the program and the service; keep the settings and results
#   sudo ./install.sh --uninstall --purge   and remove the settings, the results and the biomoe user
#
# Layout: /opt/biomoe/releases/ID (venv, bundle) with /opt/biomoe/current -> the running one,
# /etc/biomoe/monitor.toml, /var/lib/biomoe (0700, the database 0600), the biomoe-monitor service.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
PREFIX=/opt/biomoe
CONFIG_DIR=/etc/biomoe
CONFIG=$CONFIG_DIR/monitor.toml
STATE_DIR=/var/lib/biomoe
SERVICE=biomoe-monitor.service
UNIT=/etc/systemd/system/$SERVICE
ACCOUNT=biomoe

say() { echo "install.sh: $*"; }
die() { echo "install.sh: error: $*" >&2; exit 1; }

[ -f "$HERE/hub.env" ] || die "$HERE/hub.env is missing; unpack the whole archive: tar xzf biomoe-hub.tar.gz"
. "$HERE/hub.env"  # RELEASE MACHINE PYTHONS BOARD
RELEASE_DIR=$PREFIX/releases/$RELEASE

mode=install
purge=no
for arg in "$@"; do
    case $arg in
        --upgrade|--uninstall)
            [ "$mode" = install ] || die "choose one of --upgrade and --uninstall"
            mode=${arg#--} ;;
        --purge) purge=yes ;;
        -h|--help) sed -n '2,11s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) die "unknown option $arg; use --upgrade, --uninstall [--purge], or none (see --help)" ;;
    esac
done
[ "$purge" = no ] || [ "$mode" = uninstall ] || die "--purge goes with --uninstall"

check_root() {
    [ "$(id -u)" = 0 ] || die "run as root: sudo $0"
}

check_host() {
    machine=$(uname -m)
    [ "$machine" = "$MACHINE" ] || die "this archive is for $MACHINE (64-bit ARM), this machine is $machine; \
on a Raspberry Pi flash Raspberry Pi OS Lite (64-bit)"
    command -v python3 >/dev/null || die "python3 not found; Raspberry Pi OS Lite (64-bit) ships it"
    version=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    tag=cp$(echo "$version" | tr -d .)
    [ -f "$HERE/wheels/$tag/requirements.txt" ] || die "Python $version here, but this archive carries wheels for \
Python $PYTHONS only (Raspberry Pi OS / Debian Bookworm: 3.11, Trixie: 3.13); build one for this system"
    check_root
    command -v systemctl >/dev/null || die "systemctl not found: the monitor runs as a systemd service"
}

current_release() {
    if [ -L "$PREFIX/current" ]; then basename "$(readlink "$PREFIX/current")"; fi
}

point_current_at() {  # atomically: the service never sees a missing link
    ln -sfn "releases/$1" "$PREFIX/current.new"
    mv -T "$PREFIX/current.new" "$PREFIX/current"
}

setup_account() {
    if id -u "$ACCOUNT" >/dev/null 2>&1; then
        usermod -a -G dialout "$ACCOUNT"
    else
        useradd --system --user-group --groups dialout --home-dir "$STATE_DIR" --no-create-home \
            --shell /usr/sbin/nologin "$ACCOUNT"
        say "created the system user $ACCOUNT (group dialout: the serial port)"
    fi
}

setup_folders() {
    install -d -m 0755 "$PREFIX/releases" "$CONFIG_DIR"
    if [ -e "$CONFIG" ]; then
        say "keeping the settings in $CONFIG"
    else
        install -m 0640 -g "$ACCOUNT" "$HERE/monitor.toml" "$CONFIG"
    fi
    install -d -m 0700 -o "$ACCOUNT" -g "$ACCOUNT" "$STATE_DIR"
    chown -R "$ACCOUNT:$ACCOUNT" "$STATE_DIR"
    chmod -R go-rwx "$STATE_DIR"  # patient results: the service user's only
}

install_release() {
    if [ -f "$RELEASE_DIR/.installed" ]; then
        say "release $RELEASE is already in $RELEASE_DIR"
        return
    fi
    rm -rf "$RELEASE_DIR"
    say "installing release $RELEASE for Python $version into $RELEASE_DIR (offline)"
    python3 -m venv --without-pip "$RELEASE_DIR/venv"
    set -- "$HERE"/pip-*.whl
    # pip runs from its wheel; no index, no config file (Raspberry Pi OS's names piwheels), every hash checked
    PIP_CONFIG_FILE=/dev/null "$RELEASE_DIR/venv/bin/python" "$1/pip" install --quiet --no-index --no-cache-dir \
        --disable-pip-version-check --find-links "$HERE/wheels/$tag" --require-hashes --only-binary=:all: \
        -r "$HERE/wheels/$tag/requirements.txt"
    if [ -d "$HERE/bundle" ]; then cp -R "$HERE/bundle" "$RELEASE_DIR/bundle"; fi
    touch "$RELEASE_DIR/.installed"
}

self_check() {
    say "self-check of release $1: the bundle loads, its checksums pass, one synthetic window runs"
    (cd / && runuser -u "$ACCOUNT" -- "$PREFIX/current/venv/bin/biomoe" monitor --self-check --config "$CONFIG")
}

write_unit() {
    "$PREFIX/current/venv/bin/python" -m edge.cli install-service --config "$CONFIG" --user "$ACCOUNT" \
        --target "$BOARD" --output "$UNIT" >/dev/null
    systemctl daemon-reload
    systemctl enable "$SERVICE"
}

restart_service() {
    systemctl restart "$SERVICE"
}

prune_releases() {  # keep the running release and the one before it (the rollback)
    for folder in "$PREFIX"/releases/*; do
        name=$(basename "$folder")
        if [ -d "$folder" ] && [ "$name" != "$RELEASE" ] && [ "$name" != "$1" ]; then rm -rf "$folder"; fi
    done
}

case $mode in
install)
    check_host
    installed=$(current_release)
    if [ -n "$installed" ] && [ "$installed" != "$RELEASE" ]; then
        die "release $installed is installed; to replace it with $RELEASE: sudo $0 --upgrade"
    fi
    setup_account
    setup_folders
    install_release
    point_current_at "$RELEASE"
    self_check "$RELEASE" || die "release $RELEASE failed its self-check (above); fix what it names and run install.sh again"
    write_unit
    restart_service
    say "installed release $RELEASE; the monitor runs as $SERVICE (journalctl -u $SERVICE -f)"
    ;;
upgrade)
    check_host
    previous=$(current_release)
    [ -n "$previous" ] || die "nothing to upgrade in $PREFIX; install with: sudo $0"
    setup_account
    setup_folders
    install_release
    point_current_at "$RELEASE"
    if ! self_check "$RELEASE"; then
        point_current_at "$previous"
        if [ "$previous" != "$RELEASE" ]; then rm -rf "$RELEASE_DIR"; fi
        write_unit
        restart_service
        die "release $RELEASE failed its self-check (above); rolled back to $previous, which runs again"
    fi
    write_unit
    restart_service
    prune_releases "$previous"
    say "upgraded $previous -> $RELEASE; settings and results kept (rollback: release $previous stays in $PREFIX/releases)"
    ;;
uninstall)
    check_root
    if [ -e "$UNIT" ]; then
        systemctl stop "$SERVICE"
        systemctl disable "$SERVICE"
        rm -f "$UNIT"
        systemctl daemon-reload
    fi
    rm -rf "$PREFIX"
    if [ "$purge" = yes ]; then
        rm -rf "$CONFIG_DIR" "$STATE_DIR"
        if id -u "$ACCOUNT" >/dev/null 2>&1; then userdel "$ACCOUNT"; fi
        say "removed the monitor, its settings, its results and the user $ACCOUNT"
    else
        say "removed the monitor; kept the settings ($CONFIG_DIR) and results ($STATE_DIR): --purge removes them"
    fi
    ;;
esac
