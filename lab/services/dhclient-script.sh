#!/bin/sh
# hapair-lab's dhclient script for client nodes. Why not Debian's /sbin/dhclient-script: it
# replaces /etc/resolv.conf by renaming a temporary file created in /etc, which inside a node is
# the host's /etc; this one writes the node's private /etc/resolv.conf in place.
mask2len() {
    n=0; IFS=.
    for o in $1; do
        case $o in 255) n=$((n+8));; 254) n=$((n+7));; 252) n=$((n+6));; 248) n=$((n+5));;
                   240) n=$((n+4));; 224) n=$((n+3));; 192) n=$((n+2));; 128) n=$((n+1));; esac
    done
    unset IFS; echo $n
}
# every transition as a JSON line on CLOCK_MONOTONIC, for the lab's timeline (lab.timeline)
printf '{"t_mono":%s,"reason":"%s","interface":"%s","ip":"%s","server_id":"%s","lease_s":"%s"}\n' \
    "$(python3 -c 'import time; print(time.monotonic())')" "$reason" "$interface" \
    "$new_ip_address" "$new_dhcp_server_identifier" "$new_dhcp_lease_time" \
    >> /var/log/dhclient-events.jsonl
case "$reason" in
    PREINIT) ip link set dev "$interface" up ;;
    BOUND|RENEW|REBIND|REBOOT)
        if [ -n "$old_ip_address" ] && [ "$old_ip_address" != "$new_ip_address" ]; then
            ip -4 addr del "$old_ip_address/$(mask2len "$old_subnet_mask")" dev "$interface"
        fi
        ip -4 addr replace "$new_ip_address/$(mask2len "$new_subnet_mask")" dev "$interface"
        {
            [ -n "$new_domain_name" ] && echo "search $new_domain_name"
            for ns in $new_domain_name_servers; do echo "nameserver $ns"; done
        } > /etc/resolv.conf
        ;;
    EXPIRE|FAIL|RELEASE|STOP)
        [ -n "$old_ip_address" ] &&
            ip -4 addr del "$old_ip_address/$(mask2len "$old_subnet_mask")" dev "$interface"
        ;;
esac
exit 0
