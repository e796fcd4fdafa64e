# SPDX-License-Identifier: ISC
# shellcheck shell=bash
# scripts/apps.sh -- sourced by scripts/stack and scripts/lighttpd-conf:
# the apps fcgi-apps/apps.conf names (and KEEL_EXTRA_APPS's file), read
# in one place, so the apps a stack starts are the ones its lighttpd
# routes to, and a server's lighttpd routes to the same list.  The
# caller sets ROOT (the checkout) and EXTRA_APPS (a file or empty) and
# defines die.

# app_list -- "name prefix binary kind" lines from apps.conf and KEEL_EXTRA_APPS.
app_list() {
	local f name prefix bin kind rest
	for f in "$ROOT/fcgi-apps/apps.conf" ${EXTRA_APPS:+"$EXTRA_APPS"}; do
		[[ -f $f ]] || die "apps file $f not found"
		while read -r name prefix bin kind rest; do
			[[ -z $name || $name == \#* ]] && continue
			[[ -n $prefix ]] || die "$f: app $name has no prefix"
			[[ ${kind:-fcgi} == fcgi || $kind == http ]] ||
			    die "$f: app $name: kind is fcgi or http, not $kind"
			echo "$name $prefix ${bin:-fcgi-apps/keel-$name} ${kind:-fcgi}"
		done <"$f"
	done
}
