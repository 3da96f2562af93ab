# Every real-world ECS task definition goes through `berthctl register` against the running
# daemon; what the operator sees must match shared/realworld/taskdefs/expected.tsv.

test_realworld_definitions_register_or_are_refused_as_expected() {
  local dir=${BERTH_REALWORLD_DIR:-$REPO/../shared/realworld/taskdefs}
  [ -f "$dir/expected.tsv" ] || { fail "no corpus at $dir (mount it with BERTH_VM_EXTRA_SHARES)"; return; }
  ensure_running
  local n=0 file expect why out
  while IFS=$'\t' read -r file expect why; do
    [ "$file" = file ] && continue
    n=$((n + 1))
    out=$("$BIN/berthctl" register "$dir/$file" 2>&1); rc=$?
    case "$expect" in
      register)
        [ $rc -eq 0 ] || fail "$file: expected to register, got: $out"
        [[ "$out" == *:[0-9]* ]] || fail "$file: no family:revision in: $out" ;;
      refuse:*)
        [ $rc -ne 0 ] || fail "$file: expected refusal, it registered: $out"
        local ok=no name
        IFS='|' read -r -a names <<< "${expect#refuse:}"
        for name in "${names[@]}"; do [[ "$out" == *"$name"* ]] && ok=yes; done
        [ $ok = yes ] || fail "$file: refusal names none of ${expect#refuse:}: $out"
        [[ "$out" != *panick* ]] || fail "$file: crashed: $out" ;;
    esac
  done < "$dir/expected.tsv"
  (( n >= 40 )) || fail "only $n definitions in expected.tsv"
  echo "$n definitions checked"
}
