#!/bin/sh
# labbake-checks: the in-guest half of `labbake test` (baked by labbake).
# Prints one line per check of /usr/lib/labbake/checks.list on the serial
# console and in the journal, then "LABBAKE-CHECKS done ok=N fail=M".
# Usage: checks            run the checks
#        checks --enabled  exit 0 only when this boot is a labbake test
# The LABBAKE_CHECKS_* variables exist for labbake's own tests.
list=${LABBAKE_CHECKS_LIST:-/usr/lib/labbake/checks.list}
wait_units=${LABBAKE_CHECKS_WAIT:-120}      # seconds a unit may take to become active
wait_cmds=${LABBAKE_CHECKS_CMD_WAIT:-60}    # seconds a command is retried until it passes
cmd_timeout=${LABBAKE_CHECKS_CMD_TIMEOUT:-30} # seconds one try of a command may run
cmdline=${LABBAKE_CHECKS_CMDLINE:-/proc/cmdline}
fwcfg=${LABBAKE_CHECKS_FWCFG:-/sys/firmware/qemu_fw_cfg/by_name/opt/labbake/test/raw}
# The machine's identity from its seed (NODE_NAME, NODE_IP, MASTER_IP, …):
# commands see it in their environment and expect strings may name it as
# ${NODE_NAME}.
netenv=${LABBAKE_CHECKS_ENV:-/etc/network-environment}

enabled() {
	case " $(cat "$cmdline" 2>/dev/null) " in
	*" labbake.test=1 "*) return 0 ;;
	esac
	# QEMU's -fw_cfg name=opt/labbake/test,string=1 (what labbake test
	# passes): works whatever command line the boot loader has baked in.
	[ -e "$fwcfg" ] || modprobe -q qemu_fw_cfg 2>/dev/null
	[ "$(cat "$fwcfg" 2>/dev/null)" = 1 ]
}

if [ "${1-}" = --enabled ]; then
	enabled
	exit $?
fi

# The console: the first serial port, whatever console= says. It is opened
# for each line, in a subshell: a getty starting on it meanwhile hangs up
# every open file of the tty (vhangup), and the subshell, not being a
# session leader, never makes it its controlling terminal.
console=${LABBAKE_CHECKS_CONSOLE-}
if [ -z "$console" ]; then
	console=/dev/console
	if [ -c /dev/ttyS0 ] && (: >>/dev/ttyS0) 2>/dev/null; then
		console=/dev/ttyS0
	fi
fi

ok=0
fail=0

# q quotes its argument for a result line: control characters become
# spaces, \ and " get a backslash, at most 300 bytes (the tail).
q() {
	s=$(printf '%s' "$1" | tr '\n\r\t' '   ' | tr -d '\000-\010\013-\037\177' |
		tail -c 300 | sed 's/\\/\\\\/g; s/"/\\"/g')
	printf '"%s"' "$s"
}

emit() {
	(printf '%s\n' "$1" >>"$console") 2>/dev/null
	printf '%s\n' "$1"
}

result() { # result ok|fail KIND NAME DETAIL
	if [ "$1" = ok ]; then ok=$((ok + 1)); else fail=$((fail + 1)); fi
	emit "LABBAKE-CHECK $1 $2 $(q "$3") $(q "$4")"
}

now() { date +%s; }

check_unit() {
	deadline=$(($(now) + wait_units))
	while :; do
		load=$(systemctl show -p LoadState --value "$1" 2>/dev/null)
		state=$(systemctl show -p ActiveState --value "$1" 2>/dev/null)
		case $load in
		not-found | masked | bad-setting | error)
			result fail units_active "$1" "unit $load"
			return
			;;
		esac
		case $state in
		active)
			result ok units_active "$1" active
			return
			;;
		failed)
			result fail units_active "$1" "failed ($(systemctl show -p Result --value "$1" 2>/dev/null))"
			return
			;;
		esac
		if [ "$(now)" -ge "$deadline" ]; then
			result fail units_active "$1" "${state:-unknown} after ${wait_units}s"
			return
		fi
		sleep 1
	done
}

check_file() {
	if [ -e "$1" ] || [ -L "$1" ]; then
		result ok files "$1" exists
	else
		result fail files "$1" "no such file"
	fi
}

# expand prints $1 with every ${NAME} (a shell variable name) replaced by
# that variable's value, empty when unset; anything else stays as written.
expand() {
	rest=$1
	out=
	while :; do
		case $rest in
		*'${'*'}'*) ;;
		*) break ;;
		esac
		pre=${rest%%'${'*}
		after=${rest#*'${'}
		name=${after%%'}'*}
		rest=${after#*'}'}
		case $name in
		'' | [!A-Za-z_]* | *[!A-Za-z0-9_]*) out="$out$pre\${$name}" ;;
		*)
			eval "val=\${$name-}"
			out="$out$pre$val"
			;;
		esac
	done
	printf '%s' "$out$rest"
}

check_command() { # check_command RUN EXPECT
	set -- "$1" "$(expand "$2")"
	deadline=$(($(now) + wait_cmds))
	while :; do
		out=$(timeout "$cmd_timeout" /bin/sh -c "$1" </dev/null 2>&1)
		rc=$?
		if [ "$rc" -eq 0 ]; then
			case $out in
			*"$2"*)
				result ok commands "$1" "$out"
				return
				;;
			esac
			why="output lacks \"$2\": $out"
		elif [ "$rc" -eq 124 ]; then
			why="timed out after ${cmd_timeout}s: $out"
		else
			why="exit $rc: $out"
		fi
		if [ "$(now)" -ge "$deadline" ]; then
			result fail commands "$1" "$why"
			return
		fi
		sleep 2
	done
}

if [ -r "$netenv" ]; then
	set -a
	. "$netenv"
	set +a
fi

# The list sets checks_total and defines run_checks.
checks_total=0
run_checks() { :; }
if [ -r "$list" ]; then
	. "$list"
fi
emit "LABBAKE-CHECKS start n=$checks_total"
run_checks
emit "LABBAKE-CHECKS done ok=$ok fail=$fail"
exit 0
