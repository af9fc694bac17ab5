# Process supervision for scripts/run-local.sh (sourced). `supervise NAME CMD...` runs CMD
# with its output appended to var/log/NAME.log, and when it exits restarts it after a backoff
# (1 s doubling to 30 s), saying so on the console, like a process supervisor would. A process
# that ran for RESTART_RESET_SECS (60) starts over with a fresh budget; one that exits
# RESTART_MAX (5) times in a row without that is "crash looping": the supervisor gives up and
# exits 3, and run-local.sh then stops everything. SIGTERM to the supervisor stops the process
# (SIGTERM, so it shuts down gracefully) and the supervisor exits 0 without a restart.
RESTART_MAX="${RESTART_MAX:-5}"
RESTART_RESET_SECS="${RESTART_RESET_SECS:-60}"
RESTART_DELAY_MAX_SECS="${RESTART_DELAY_MAX_SECS:-30}"

supervise() {
  # runs in its own background subshell: failing exits are its business, not errexit's
  set +e
  local name="$1"; shift
  local child=0 stopping=0 crashes=0 delay=1 code started napper=0
  # (never `kill 0`: that would signal the whole process group)
  trap 'stopping=1; for p in "$child" "$napper"; do [ "$p" -gt 0 ] && kill -TERM "$p" 2>/dev/null; done' TERM
  while :; do
    # its own session: a Ctrl-C on the terminal reaches run-local.sh only, which stops the
    # processes through their supervisors (no restart race)
    setsid "$@" >>"var/log/$name.log" 2>&1 &
    child=$!
    started=$SECONDS
    echo "started $name (pid $child, log var/log/$name.log)"
    while :; do
      wait "$child"; code=$?
      # a trapped signal interrupts wait (code > 128) while the process may still run
      kill -0 "$child" 2>/dev/null || break
    done
    [ "$stopping" = 1 ] && exit 0
    if (( SECONDS - started >= RESTART_RESET_SECS )); then crashes=0; delay=1; fi
    crashes=$((crashes + 1))
    if (( crashes >= RESTART_MAX )); then
      echo "$name exited (code $code) $crashes times in a row within ${RESTART_RESET_SECS}s each: it keeps crashing, giving up (see var/log/$name.log)" >&2
      exit 3
    fi
    echo "$name exited (code $code); restarting it in ${delay}s (restart $crashes, gives up after $RESTART_MAX quick exits; see var/log/$name.log)" >&2
    sleep "$delay" & napper=$!
    wait "$napper" 2>/dev/null
    napper=0
    [ "$stopping" = 1 ] && exit 0
    delay=$(( delay * 2 > RESTART_DELAY_MAX_SECS ? RESTART_DELAY_MAX_SECS : delay * 2 ))
  done
}
