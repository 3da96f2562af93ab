# berth's .deb as an operator installs it (issue 26): apt-get install in a guest where no berth
# was installed before (tests/all runs this file first), a task run by the packaged berthd,
# remove, reinstall and purge with dpkg. Named test_0_ so a whole run takes it first.

PKG_DIR=$REPO/target/packages

pkg_state() { dpkg-query -W -f '${db:Status-Abbrev}' berth 2>/dev/null | tr -d ' '; }
# The tasks the packaged berthd reports: "ID DEFINITION STATUS" lines.
pkg_tasks() { /usr/bin/berthctl ps --all | awk 'NR > 1 {print $1, $2, $3}'; }

test_0_package_deb_installs_runs_a_task_is_removed_keeps_its_history_and_purges() {
  local deb
  deb=$(compgen -G "$PKG_DIR/berth_*.deb" | head -1)
  [ -n "$deb" ] || { fail "no .deb in $PKG_DIR (packaging/build deb)"; return 1; }
  [ ! -e /etc/systemd/system/berthd.service ] && [ ! -e /usr/bin/berthd ] \
    || { fail "not a fresh guest: a berthd is installed already"; return 1; }
  # The guest has no network: every dependency is in its image, so apt needs no download.
  # man-db's trigger would re-index every manual page at each install (most of a minute under
  # emulation, and nothing of berth's): this throwaway guest does without it.
  rm -f /var/lib/man-db/auto-update
  out=$(DEBIAN_FRONTEND=noninteractive apt-get install -y "$deb" 2>&1) \
    || { fail "apt-get install $deb failed: $(tail -15 <<<"$out")"; return 1; }
  assert_eq ii "$(pkg_state)" "dpkg's state of berth after install"
  wait_for 30 systemctl is-active -q berthd || fail "berthd not active after install: $(journalctl -u berthd -n 15 --no-pager)"
  assert_eq enabled "$(systemctl is-enabled berthd)" "berthd enabled by the install"
  getent group berth >/dev/null || fail "no berth group after install"
  assert_eq "750 root:berth" "$(stat -c '%a %U:%G' /var/lib/berth)" "/var/lib/berth"
  # A task by the packaged binaries, on the system bus, its output shown as it comes.
  "$REPO/examples/make-busybox-image" /tmp/pkg-images >/dev/null || { fail "no busybox image"; return 1; }
  /usr/bin/berthctl image import --name busybox:latest /tmp/pkg-images/layout >/dev/null || { fail "import refused"; return 1; }
  /usr/bin/berthctl register /usr/share/doc/berth/examples/hello.json >/dev/null || { fail "hello refused"; return 1; }
  out=$(/usr/bin/berthctl run hello --wait 2>/tmp/pkg-run.err); rc=$?
  assert_eq 0 "$rc" "berthctl run hello --wait's exit status"
  assert_eq "hello from berth" "$out" "what run --wait printed on stdout: the container's output"
  assert_contains "$(cat /tmp/pkg-run.err)" "STOPPED" "run --wait's closing line on stderr"
  printf '{"family":"pkg-idle","networkMode":"none","containerDefinitions":[{"name":"s","image":"busybox","memory":16,"stopTimeout":2,"command":["sleep","600"]}]}' \
    | /usr/bin/berthctl register - >/dev/null
  idle=$(/usr/bin/berthctl run pkg-idle) || { fail "pkg-idle refused: $idle"; return 1; }
  /usr/bin/berthctl wait --status RUNNING --timeout 60 "$idle" >/dev/null || fail "pkg-idle not RUNNING"

  # Removal stops the task (the ECS way: its reason is kept) and berthd, and keeps the state.
  # apt-get for the first install (dependencies resolved as an operator's would be); dpkg for
  # the rest: under emulation each apt-get spends most of a minute reading its package lists.
  out=$(dpkg -r berth 2>&1) || fail "dpkg -r berth failed: $(tail -15 <<<"$out")"
  assert_eq rc "$(pkg_state)" "dpkg's state of berth after remove (config kept)"
  systemctl is-active -q berthd && fail "berthd still active after remove"
  [ -e /usr/bin/berthd ] && fail "/usr/bin/berthd still there after remove"
  [ -d "/sys/fs/cgroup/berth.slice/berth-$idle.scope" ] && fail "task $idle's scope still there after remove"
  [ -d /var/lib/berth/tasks ] || fail "remove took /var/lib/berth with it"

  # A reinstall finds the history.
  out=$(dpkg -i "$deb" 2>&1) || { fail "reinstall (dpkg -i) failed: $(tail -15 <<<"$out")"; return 1; }
  wait_for 30 systemctl is-active -q berthd || fail "berthd not active after reinstall"
  tasks=$(pkg_tasks)
  assert_contains "$tasks" "$idle pkg-idle:1 STOPPED" "the idle task in the history after reinstall"
  assert_contains "$tasks" "hello:1 STOPPED" "the hello task in the history after reinstall"
  assert_contains "$(/usr/bin/berthctl --json describe "$idle" | jfield stoppedReason)" "package was removed" "why the idle task stopped"

  # Purge removes the state and the configuration.
  out=$(dpkg -P berth 2>&1) || fail "dpkg -P berth failed: $(tail -15 <<<"$out")"
  case $(pkg_state) in ''|un|pn) ;; *) fail "dpkg's state of berth after purge: $(pkg_state)" ;; esac
  [ -e /var/lib/berth ] && fail "/var/lib/berth still there after purge: $(ls /var/lib/berth)"
  [ -e /etc/berth/berthd.toml ] && fail "/etc/berth/berthd.toml still there after purge"
  systemctl daemon-reload
  return 0
}
