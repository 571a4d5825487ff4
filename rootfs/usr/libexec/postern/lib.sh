# Shell helpers for the boot scripts (sourced).

log() { echo "postern: $*" > /dev/console; logger -t postern "$*" 2>/dev/null; }

# The clock never starts earlier than the build, nor earlier than the last
# time the box saw (recorded on /data), so certificates and logs stay sane
# on boards without a battery-backed clock.
clock_floor() {
	floor=$(cat /etc/postern-build-epoch 2>/dev/null || echo 0)
	if [ -f /data/etc/clock ]; then
		seen=$(date -r /data/etc/clock +%s 2>/dev/null || echo 0)
		[ "$seen" -gt "$floor" ] && floor=$seen
	fi
	now=$(date +%s)
	if [ "$now" -lt "$floor" ]; then
		date -s "@$floor" >/dev/null && log "clock set forward to $(date -u '+%Y-%m-%d %H:%M:%S') UTC"
	fi
}

clock_save() {
	[ -d /data/etc ] && touch /data/etc/clock 2>/dev/null
}

apply_hostname() {
	name=$POSTERN_HOSTNAME
	if [ -r /data/etc/postern.conf ]; then
		# The global setting: before the first [section].
		n=$(sed -n -e '/^[[:space:]]*\[/q' -e 's/^[[:space:]]*hostname[[:space:]]\{1,\}\([A-Za-z0-9-]\{1,63\}\)[[:space:]]*\(#.*\)\{0,1\}$/\1/p' /data/etc/postern.conf | head -n 1)
		[ -n "$n" ] && name=$n
	fi
	hostname "$name"
	echo "$name" > /run/hostname
}
