# Shared by scripts/interrupt-storm, scripts/soak and scripts/reliability-short (sourced).
#
# Every campaign uses its own state and results directories under one work directory, so it
# never touches another pvcheck's runs, and checks leftovers by the run ids it saw.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

die() { echo "$(basename "$0"): $*" >&2; exit 2; }

# The release binary, built once (the campaigns measure the tool as users run it).
pvcheck_binary() {
    if [[ -n "${PVCHECK_BIN:-}" ]]; then
        [[ -x "$PVCHECK_BIN" ]] || die "PVCHECK_BIN=$PVCHECK_BIN is not executable"
        echo "$PVCHECK_BIN"
        return
    fi
    (cd "$REPO" && cargo build --release -q -p pvcheck) >&2 || die "cargo build --release -p pvcheck failed"
    echo "$REPO/target/release/pvcheck"
}

# leftovers STATE_DIR RUN_ID...: prints one line per thing a run left (mount, loop device,
# process, directory, image), nothing when clean.
leftovers() {
    local state=$1; shift
    local id
    # Mounts under the state directory, or of a run's tmpfs volume directories.
    awk '{print $5}' /proc/self/mountinfo | while read -r mp; do
        case "$mp" in
            "$state"/*) echo "mount $mp" ;;
        esac
        for id in "$@"; do
            case "$mp" in /dev/shm/pvcheck/"$id"-*) echo "mount $mp" ;; esac
        done
    done
    # Loop devices backed by a file under the state directory (also deleted ones).
    losetup -a -O NAME,BACK-FILE --noheadings 2>/dev/null | while read -r dev back; do
        case "$back" in "$state"/*) echo "loop device $dev backed by $back" ;; esac
    done
    # Processes of the runs: the run label in their environment, or the state dir on their
    # command line (the campaign's own `pvcheck run`/`cleanup` excepted).
    local pats=() f pid cmd
    for id in "$@"; do pats+=(-e "PVCHECK_RUN_LABEL=$id"); done
    {
        if ((${#pats[@]})); then
            grep -lzx "${pats[@]}" /proc/[0-9]*/environ 2>/dev/null
        fi
        grep -laF -- "$state/" /proc/[0-9]*/cmdline 2>/dev/null
    } | while read -r f; do
        pid=${f#/proc/}; pid=${pid%%/*}
        [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
        cmd=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | cut -c1-100)
        [[ -n $cmd ]] || continue
        case "$cmd" in *"pvcheck run "*|*"pvcheck cleanup "*|grep*) continue ;; esac
        echo "process $pid $cmd"
    done | sort -u
    # Run directories, images and tmpfs volume directories.
    if [[ -d $state/runs ]]; then
        find "$state/runs" -mindepth 1 -maxdepth 1 -printf 'directory %p\n'
    fi
    for id in "$@"; do
        find /dev/shm/pvcheck -mindepth 1 -maxdepth 1 -name "$id-*" -printf 'directory %p\n' 2>/dev/null
    done
    find "$state" -name image -printf 'image %p\n' 2>/dev/null
}

# run_ids_of STATE_DIR RESULTS_DIR: the run ids seen (run directories and result files).
run_ids_of() {
    local state=$1 results=$2
    {
        ls "$state/runs" 2>/dev/null
        ls "$results/runs" 2>/dev/null | sed -n 's/.*-\([0-9a-f]\{8\}\)\.json$/\1/p'
    } | sort -u
}
