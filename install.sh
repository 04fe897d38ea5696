#!/usr/bin/env bash
# Sets up plend in a virtual environment in .venv (safe to run again).
#
#   ./install.sh            the daemon, plus the simulator on a PC
#   ./install.sh --dev      also the test and lint tools, and (on a PC) policy training
#   ./install.sh --pi       the Raspberry Pi set-up (the default on a Pi): system packages,
#                           I2C at 400 kHz, the plend user, and plend.service enabled at boot
#   ./install.sh --dry-run  print each step that would change something, and change nothing
#
# plend and plenctl are linked onto PATH: into ~/.local/bin, or /usr/local/bin for the
# Pi set-up as root. onnxruntime runs the walking policies where it has wheels (not on
# 32-bit ARM, where plend evaluates them with numpy).
#
# On a Pi the system steps need root: run `sudo ./install.sh` (in your own checkout the venv
# is still made as you). Only what is missing is done, so a second run changes nothing.
# Environment: PYTHON picks the interpreter (default python3, 3.11 or newer);
# PLEND_SYSROOT is put in front of every system file it reads or writes (for tests).
set -euo pipefail

cd "$(dirname "$0")"
REPO=$(pwd -P)
PYTHON=${PYTHON:-python3}
VENV=.venv
SYSROOT=${PLEND_SYSROOT:-}
# systemd-python is published as source only: it builds with gcc against libsystemd.
APT_PACKAGES=(python3-venv python3-dev i2c-tools libsystemd-dev pkg-config gcc)
BAUD_RATE=400000
dev=0
on_pi=0
dry_run=0

usage() {
    sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$0"
}

for arg in "$@"; do
    case "$arg" in
        --dev) dev=1 ;;
        --pi) on_pi=1 ;;
        --dry-run) dry_run=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: error: unknown option '$arg' (try --help)" >&2; exit 2 ;;
    esac
done

say() { printf '==> %s\n' "$*"; }
warn() { printf 'install.sh: warning: %s\n' "$*" >&2; }
die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }

# Runs a command that changes something, or with --dry-run only prints it.
run() {
    if [ "$dry_run" -eq 1 ]; then
        printf 'would run: %s\n' "$*"
    else
        "$@"
    fi
}

is_root() { [ "$(id -u)" -eq 0 ]; }

# `sudo ./install.sh` in a user's own checkout makes the venv as that user, so that no
# root-owned files end up in it.
sudo_owner=
if [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ] && [ "$(stat -c %U .)" = "$SUDO_USER" ]; then
    sudo_owner=$SUDO_USER
fi
as_owner() {
    if [ -n "$sudo_owner" ] && is_root; then
        run runuser -u "$sudo_owner" -- "$@"
    else
        run "$@"
    fi
}

if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "install.sh: error: $PYTHON not found; install Python 3.11 or newer (apt-get install python3 python3-venv)" >&2
    exit 1
fi
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "install.sh: error: $("$PYTHON" --version 2>&1) is too old; plend needs Python 3.11 or newer" >&2
    exit 1
fi

if grep -qs 'Raspberry Pi' "$SYSROOT/proc/device-tree/model"; then
    on_pi=1
fi

# A 32-bit ARM Python (32-bit Raspberry Pi OS, even on a 64-bit kernel) has no onnxruntime.
arm32=0
case "$("$PYTHON" -c 'import platform, struct; print(platform.machine(), struct.calcsize("P") * 8)')" in
    arm*" 32"|aarch64" 32") arm32=1 ;;
esac

did=()        # what this run changed, for the summary
reboot_for=() # changes that take effect at the next boot

# --- the Pi's system steps --------------------------------------------------------------

missing_packages() {
    local pkg
    for pkg in "${APT_PACKAGES[@]}"; do
        # shellcheck disable=SC2016  # ${Status} is dpkg-query's field, not a shell variable
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
            printf '%s\n' "$pkg"
        fi
    done
}

install_packages() {
    if ! command -v dpkg-query >/dev/null 2>&1; then
        warn "not a Debian system: install ${APT_PACKAGES[*]} yourself"
        return
    fi
    local missing
    mapfile -t missing < <(missing_packages)
    if [ "${#missing[@]}" -eq 0 ]; then
        say "system packages already installed"
        return
    fi
    say "installing system packages: ${missing[*]}"
    run apt-get update
    DEBIAN_FRONTEND=noninteractive run apt-get install -y "${missing[@]}"
    did+=("installed ${missing[*]}")
}

# The firmware's config.txt: /boot/firmware since Bookworm, /boot before (where Bookworm
# leaves only a pointer to the new place).
config_txt() {
    local file
    for file in "$SYSROOT/boot/firmware/config.txt" "$SYSROOT/boot/config.txt"; do
        if [ -f "$file" ]; then
            printf '%s\n' "$file"
            return
        fi
    done
}

# Keeps one copy of config.txt as it was before install.sh first changed it.
backup_config() {
    local file=$1
    if [ -n "$file" ] && [ "$dry_run" -eq 0 ] && [ ! -e "$file.plend-backup" ]; then
        cp -p "$file" "$file.plend-backup"
    fi
}

# Appends a dtparam line after an [all] filter, so that it applies to every Pi model even
# when the file ends inside a [cm4] or [pi5] section.
append_config() {
    local file=$1 line=$2
    if [ "$dry_run" -eq 1 ]; then
        printf 'would append to %s: %s\n' "$file" "$line"
        return
    fi
    backup_config "$file"
    printf '\n# added by plend install.sh\n[all]\n%s\n' "$line" >>"$file"
}

enable_i2c() {
    local cfg=$1
    # The same test raspi-config's get_i2c makes.
    if [ -n "$cfg" ] && grep -Eq '^(device_tree_param|dtparam)=([^,]*,)*i2c(_arm)?(=(on|true|yes|1))?(,.*)?$' "$cfg"; then
        say "I2C already enabled"
        return
    fi
    if command -v raspi-config >/dev/null 2>&1; then
        say "enabling I2C"
        backup_config "$cfg"
        run raspi-config nonint do_i2c 0
    elif [ -n "$cfg" ]; then
        say "enabling I2C in $cfg"
        append_config "$cfg" "dtparam=i2c_arm=on"
    else
        warn "no config.txt in /boot/firmware or /boot, and no raspi-config: enable I2C yourself"
        return
    fi
    did+=("enabled I2C")
    reboot_for+=("I2C enabled")
}

set_baud_rate() {
    local cfg=$1 current
    if [ -z "$cfg" ]; then
        warn "no config.txt in /boot/firmware or /boot: add dtparam=i2c_arm_baudrate=$BAUD_RATE to it yourself"
        return
    fi
    current=$(grep -Eo '^dtparam=([^#]*,)?i2c(_arm)?_baudrate=[0-9]+' "$cfg" | tail -n 1 | sed 's/.*=//' || true)
    if [ "$current" = "$BAUD_RATE" ]; then
        say "I2C clock already $BAUD_RATE Hz"
    elif [ -n "$current" ]; then
        # Someone chose it (a slower bus is a remedy for the BNO055's clock stretching).
        warn "$cfg sets the I2C clock to $current Hz; leaving it (plend's timing assumes $BAUD_RATE)"
    else
        say "setting the I2C clock to $BAUD_RATE Hz in $cfg"
        append_config "$cfg" "dtparam=i2c_arm_baudrate=$BAUD_RATE"
        did+=("I2C clock set to $BAUD_RATE Hz")
        reboot_for+=("I2C clock")
    fi
}

# Installs $1 as $2 unless $2 already has that content; returns 1 when nothing changed.
install_file() {
    local src=$1 dest=$2
    if cmp -s "$src" "$dest"; then
        say "$dest is up to date"
        return 1
    fi
    say "installing $dest"
    run install -D -m 0644 "$src" "$dest"
}

create_user() {
    local conf="$SYSROOT/etc/sysusers.d/plend.conf" changed=0
    if install_file systemd/plend.sysusers "$conf"; then
        changed=1
    fi
    if [ "$changed" -eq 0 ] && grep -Eqs '^i2c:[^:]*:[^:]*:(.*,)?plend(,|$)' "$SYSROOT/etc/group"; then
        say "user plend exists and is in group i2c"
        return
    fi
    say "creating user plend (groups plend, i2c)"
    run systemd-sysusers ${SYSROOT:+"--root=$SYSROOT"} plend.conf
    did+=("user plend (groups plend, i2c)")
}

install_unit() {
    rendered=$(mktemp)
    trap 'rm -f "$rendered"' EXIT
    sed -e "s|@VENV@|$REPO/$VENV|g" -e "s|@REPO@|$REPO|g" systemd/plend.service >"$rendered"
    if install_file "$rendered" "$SYSROOT/etc/systemd/system/plend.service"; then
        did+=("plend.service installed")
        unit_changed=1
        if [ "$dry_run" -eq 1 ] || { [ -z "$SYSROOT" ] && [ -d /run/systemd/system ]; }; then
            run systemctl daemon-reload
        fi
    fi
}

enable_unit() {
    if systemctl ${SYSROOT:+"--root=$SYSROOT"} is-enabled --quiet plend.service 2>/dev/null; then
        say "plend.service already enabled"
        return
    fi
    say "enabling plend.service (starts at boot)"
    run systemctl ${SYSROOT:+"--root=$SYSROOT"} enable plend.service
    did+=("plend.service enabled")
}

# The service runs as plend, which must read the code and the venv. The unit binds the
# repository into its own view of the file system, so under /home and /root the parent
# directories do not matter (a 0700 home is fine); elsewhere each must be searchable.
check_readable() {
    local bad parent=$REPO
    bad=$(find "$REPO" \( -name .git -o -name '.*_cache' -o -name .hypothesis \) -prune -o \
        \( -type d ! -perm -o=rx -o ! -type d ! -type l ! -perm -o=r \) -print -quit 2>/dev/null || true)
    if [ -n "$bad" ]; then
        warn "user plend cannot read $bad; make the checkout readable: chmod -R o+rX $REPO"
    fi
    case "$REPO" in
        /home/*|/root/*) return ;;
    esac
    while parent=$(dirname "$parent"); [ "$parent" != / ]; do
        if [ -z "$(find "$parent" -maxdepth 0 -perm -o=x)" ]; then
            warn "user plend cannot enter $parent; run: chmod o+x $parent (or clone plend to /opt/plend)"
        fi
    done
}

# The unit hides /home and /root except the checkout, so the venv's interpreter must live
# elsewhere (the system's /usr/bin/python3, not a pyenv build in a home directory).
check_interpreter() {
    local python
    python=$(readlink -f "$VENV/bin/python" 2>/dev/null) || return 0
    case "$python" in
        "$REPO"/*) ;;
        /home/*|/root/*)
            warn "the service cannot see $python (home directories are hidden from it); recreate the venv: rm -rf .venv && PYTHON=/usr/bin/python3 ./install.sh"
            ;;
    esac
}

summary() {
    if [ "$dry_run" -eq 1 ]; then
        say "dry run: nothing was changed"
        return
    fi
    if [ "${#did[@]}" -eq 0 ]; then
        say "the system was already set up; nothing changed"
    else
        say "changed:"
        printf '      %s\n' "${did[@]}"
    fi
    if [ "${#reboot_for[@]}" -gt 0 ]; then
        say "reboot to apply (${reboot_for[*]}): sudo reboot; plend starts at boot"
    elif [ -z "$SYSROOT" ] && [ -d /run/systemd/system ]; then
        if systemctl is-active --quiet plend.service; then
            [ "$unit_changed" -eq 0 ] || say "restart to use the new unit: sudo systemctl restart plend"
        else
            say "start it now: sudo systemctl start plend"
        fi
    fi
    say "logs: journalctl -u plend -f"
    say "to use the control socket, join group plend: sudo usermod -aG plend ${SUDO_USER:-USER} (then log in again)"
}

# --- plend and plenctl on PATH -----------------------------------------------------------

# The home of the user the checkout belongs to (under sudo, not root's).
owner_home() {
    if [ -n "$sudo_owner" ]; then
        getent passwd "$sudo_owner" | cut -d: -f6
    else
        printf '%s\n' "$HOME"
    fi
}

# Links $1 to $2 unless it already points there. A link left by another plend checkout is
# replaced; anything else is left alone with a warning.
link_one() {
    local target=$1 link=$2 current
    if [ -L "$link" ]; then
        current=$(readlink "$link")
        if [ "$current" = "$target" ]; then
            return 1
        fi
        case "$current" in
            */.venv/bin/plend|*/.venv/bin/plenctl) ;;
            *) warn "$link points to $current; leaving it (plend is at $target)"; return 1 ;;
        esac
        run rm -f "$link"
    elif [ -e "$link" ]; then
        warn "$link exists and is not a link; leaving it (plend is at $target)"
        return 1
    fi
    if [ -n "$sudo_owner" ] && is_root && [ "$system" -eq 0 ]; then
        as_owner ln -s "$target" "$link"
    else
        run ln -s "$target" "$link"
    fi
}

link_commands() {
    local dir cmd changed=0
    if [ "$system" -eq 1 ]; then
        dir="$SYSROOT/usr/local/bin"
    else
        dir="$(owner_home)/.local/bin"
    fi
    if [ ! -d "$dir" ]; then
        if [ "$system" -eq 1 ]; then run mkdir -p "$dir"; else as_owner mkdir -p "$dir"; fi
    fi
    for cmd in plend plenctl; do
        if link_one "$REPO/$VENV/bin/$cmd" "$dir/$cmd"; then
            changed=1
        fi
    done
    if [ "$changed" -eq 0 ]; then
        say "plend and plenctl already linked in $dir"
    elif [ "$dry_run" -eq 1 ]; then
        say "would link plend and plenctl into $dir"
    else
        say "linked plend and plenctl into $dir"
        did+=("plend and plenctl linked into $dir")
    fi
    case ":$PATH:" in
        *":$dir:"*) cmd_prefix= ;;
        *)
            cmd_prefix="$VENV/bin/"
            say "$dir is not on your PATH yet: log in again, or run: export PATH=\"$dir:\$PATH\""
            ;;
    esac
}

# --- the steps --------------------------------------------------------------------------

system=0
if [ "$on_pi" -eq 1 ]; then
    if is_root || [ "$dry_run" -eq 1 ]; then
        system=1
    elif command -v dpkg-query >/dev/null 2>&1 && [ -n "$(missing_packages)" ]; then
        # Without them the venv cannot even be made (python3-venv) or systemd-python built.
        die "system packages missing: $(missing_packages | paste -sd' ' -); run: sudo ./install.sh"
    fi
fi
unit_changed=0
cmd_prefix="$VENV/bin/" # how to name plend in advice: bare once it is on PATH

if [ "$system" -eq 1 ]; then
    # The unit names the venv and the repository by absolute path; a path that would need
    # quoting in a unit file (spaces, %) is refused before anything is changed.
    case "$REPO" in
        *[!A-Za-z0-9._/+-]*)
            die "plend.service cannot run from '$REPO' (spaces or special characters); clone plend to a plain path such as /opt/plend"
            ;;
    esac
    install_packages
    cfg=$(config_txt)
    enable_i2c "$cfg"
    set_baud_rate "$cfg"
fi

if [ ! -x "$VENV/bin/python" ]; then
    say "creating virtual environment in $VENV"
    as_owner "$PYTHON" -m venv "$VENV"
else
    say "using existing virtual environment in $VENV"
fi

extras=()
if [ "$arm32" -eq 0 ]; then
    # The camera pose source (plend track) needs OpenCV, on the robot and on a PC.
    extras+=(onnxruntime track)
else
    warn "32-bit ARM: onnxruntime has no wheels here; policies run on plend's numpy evaluator (no OpenCV either: no camera tracker)"
fi
if [ "$on_pi" -eq 0 ]; then
    # pybullet has no wheels for the Pi: the simulator is for development machines, and
    # so are plots of recordings and videos of simulated runs (OpenCV: not on 32-bit ARM).
    extras+=(sim plot)
    [ "$arm32" -eq 1 ] || extras+=(video live)
else
    # The service logs to the journal through systemd-python.
    extras+=(systemd)
fi
if [ "$dev" -eq 1 ]; then
    extras+=(test lint)
    if [ "$on_pi" -eq 0 ]; then
        # Policy training (torch CPU, stable-baselines3) runs on development machines.
        extras+=(train)
    fi
fi

spec="."
if [ "${#extras[@]}" -gt 0 ]; then
    joined=$(printf '%s\n' "${extras[@]}" | sort -u | paste -sd, -)
    spec=".[$joined]"
fi

say "installing plend ($spec)"
as_owner "$VENV/bin/python" -m pip install --quiet -e "$spec"

if [ "$dry_run" -eq 0 ]; then
    say "done: $("$VENV/bin/plend" --version)"
fi
link_commands
if [ "$on_pi" -eq 0 ]; then
    say "try: ${cmd_prefix}plend run --hal sim --fast --gait sine --speed 0.5 --duration 20 --summary json"
    exit 0
fi

if [ "$system" -eq 0 ]; then
    say "not root: skipped the system steps (packages, I2C, user plend, plend.service)"
    say "to install the service, run: sudo ./install.sh"
    exit 0
fi

check_readable
check_interpreter
create_user
install_unit
enable_unit
summary
