"""Things in the seed's design that misbehave, found by running it: the README's findings list.

Why a list in code: the renderer refers to these ids when it has to work around one (a `Change`
with `finding=`), the lint names them, and `RenderOptions.keep_findings` re-creates one on purpose
so a scenario can show its effect. Each finding says what the seed says, what happens, and the
command that shows it in a running lab.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    """One misbehaviour of the seed's design, with the evidence to reproduce it."""

    id: str
    title: str
    seed_says: str
    what_happens: str
    evidence: str
    fixed_by_lab: bool  # the renderer works around it in every profile (see its Change)


FINDINGS: tuple[Finding, ...] = (
    Finding(
        id="F1",
        title="addn-hosts reads a path that is not the replicated disk",
        seed_says="dnsmasq.conf: `addn-hosts=/media/drbd0/dnsmasq/banner_add_hosts`; the disk is "
        "mounted at /srv/drbd0 (haresources, default-dnsmasq, dhcp-leasefile)",
        what_happens="dnsmasq starts anyway, logs `failed to load names from "
        "/media/drbd0/dnsmasq/banner_add_hosts`, and every static name (rtbr1, lsvm1, lsvm2, "
        "linuxserver) is NXDOMAIN: `local=/internal.thesteins.org/` keeps the miss local",
        evidence="HAPAIR_KEEP_FINDINGS=F1 lab up; lab exec c1 -- dig @192.168.1.4 "
        "lsvm1.internal.thesteins.org (status: NXDOMAIN); lab exec lsvm2 -- grep 'failed to "
        "load' /var/log/syslog",
        fixed_by_lab=True,
    ),
    Finding(
        id="F2",
        title="`tag: enp2s1` (space after `tag:`) never matches: clients get the node's own "
        "address as router and DNS server",
        seed_says="dnsmasq.conf: `dhcp-option=tag: enp2s1,option:router,192.168.1.1` and three "
        "more lines alike",
        what_happens="dnsmasq takes the tag name with its leading space, so the four options are "
        "never sent; by default dnsmasq then offers its own interface address (192.168.1.7 on "
        "lsvm2) as router and DNS server, not 192.168.1.1/192.168.1.4 — after a failover clients "
        "point at the dead node for DNS and routing until they renew; guests get an lsvm as "
        "router. Measured: dhclient lease `option routers 192.168.1.7; option "
        "domain-name-servers 192.168.1.7`",
        evidence="HAPAIR_KEEP_FINDINGS=F2 lab up; lab exec c1 -- cat /var/lib/dhcp/dhclient.leases",
        fixed_by_lab=True,
    ),
    Finding(
        id="F3",
        title="`IPv6addr:: 2601:...` (space after `::`) breaks the resource group",
        seed_says="haresources: `IPv6addr:: 2601:40f:4100:13c2:0:ffff:c0a8:0104/64/enp2s1`",
        what_happens="heartbeat's ResourceManager splits haresources on blanks: `IPv6addr::` "
        "becomes a resource with no address and `2601:...` a resource script name that does not "
        "exist (`Cannot locate resource script`), so the IPv6 VIPs are never configured",
        evidence="HAPAIR_KEEP_FINDINGS=F3 lab up; lab exec lsvm2 -- grep -i 'resource script' "
        "/var/log/ha-log",
        fixed_by_lab=True,
    ),
    Finding(
        id="F4",
        title="banner_add_hosts gives rtbr1 the DNS VIP's IPv6 address",
        seed_says="banner_add_hosts: `2601:40f:4100:13c2:0:ffff:c0a8:104  rtbr1` — "
        "…c0a8:104 is the haresources IPv6 VIP (192.168.1.4 mapped), i.e. linuxserver",
        what_happens="AAAA rtbr1.internal.thesteins.org answers the DNS servers' VIP, and the "
        "VIP's reverse name is rtbr1: IPv6 traffic meant for the router goes to the active lsvm",
        evidence="lab exec c1 -- dig +short @192.168.1.4 AAAA rtbr1.internal.thesteins.org",
        fixed_by_lab=False,
    ),
    Finding(
        id="F5",
        title="both IPv6 VIPs sit in the same /64 on two different VLANs",
        seed_says="haresources: `…c0a8:0104/64/enp2s1` and `…c0a8:0304/64/enp2s1.3`, both in "
        "2601:40f:4100:13c2::/64",
        what_happens="the active node gets two on-link routes for one /64 (enp2s1 and "
        "enp2s1.3), so which VLAN it uses to reach an address of that prefix is the kernel's "
        "choice; and because enp2s1.3 then holds an address in the prefix, dnsmasq's "
        "`constructor:enp2s1` range also sends RAs on enp2s1.3 (seen: `RTR-ADVERT(enp2s1.3) "
        "2001:db8:4100:13c2::`), putting guests in the internal /64",
        evidence="lab exec lsvm2 -- ip -6 route show 2001:db8:4100:13c2::/64",
        fixed_by_lab=False,
    ),
    Finding(
        id="F6",
        title="the guest VLAN's DNS server is the router, not the HA pair",
        seed_says="dnsmasq.conf: `dhcp-option=tag: enp2s1.3,option:dns-server,192.168.3.1` "
        "(\"Just send VLAN3 to the router for DHCP and DNS\")",
        what_happens="guests resolve through rtbr1, so the names dnsmasq registers under "
        "guest.thesteins.org are not visible to guests, and DNS failover does not apply to "
        "VLAN3; the VIP 192.168.3.4 serves DHCP only in practice",
        evidence="lab exec g1 -- cat /etc/resolv.conf",
        fixed_by_lab=False,
    ),
    Finding(
        id="F7",
        title="upstream `server=fe80::…` has no interface scope",
        seed_says="dnsmasq.conf: `server=fe80::6eb0:ceff:fee1:7018` (no `%enp2s1`)",
        what_happens="harmless here, measured: dnsmasq 2.90 accepts the line and the queries do "
        "arrive — rtbr1's resolver logs `query[A] example.com from fe80::5054:ff:fe63:1e59` "
        "(lsvm2's link-local, on eth0) next to the same query from 192.168.1.7; dnsmasq asks "
        "both upstreams. It would break on a host with a second link carrying fe80::/64",
        evidence="lab exec rtbr1 -- grep query /var/log/resolver.log",
        fixed_by_lab=False,
    ),
    Finding(
        id="F8",
        title="one heartbeat path only",
        seed_says="ha.cf: `ucast enp2s1 192.168.1.6` / `ucast enp2s1 192.168.1.7` — no second "
        "medium (no bcast on enp2s1.3, no serial)",
        what_happens="losing VLAN1 between the nodes while both stay up is a split-brain: both "
        "take every VIP and both mount the disk as DRBD Primary (`cable_pull_primary`: 21.9 s "
        "with two holders; on reconnect DRBD's `pri-lost-after-sb` reboots one node). Losing "
        "only port 694 is not, because DRBD on the same VLAN still sees its peer (F16)",
        evidence='pytest scenarios/ -k "split_brain or cable_pull"',
        fixed_by_lab=False,
    ),
    Finding(
        id="F9",
        title="DHCP server-identifier is the node's own address, not the VIP",
        seed_says="dnsmasq serves DHCP from the active node; nothing sets the server identifier",
        what_happens="clients RENEW by unicast to the node that granted the lease (192.168.1.7); "
        "after a failover those renewals go to the dead node until the client REBINDs at T2",
        evidence="lab exec c1 -- grep dhcp-server-identifier /var/lib/dhcp/dhclient.leases",
        fixed_by_lab=False,
    ),
    Finding(
        id="F10",
        title="the seed's `crm configure` commands do nothing with `crm off`",
        seed_says="`sudo crm configure property stonith-enabled=false` and `no-quorum-policy="
        "ignore`, while ha.cf says `crm off`",
        what_happens="heartbeat runs in haresources mode (no CRM); the `crm` shell is Pacemaker's "
        "and is not part of this setup; the commands are no-ops or errors, not a configuration",
        evidence="grep '^crm' fixtures/seed/ha.cf",
        fixed_by_lab=False,
    ),
)

FINDINGS = (*FINDINGS, Finding(
    id="F11",
    title="the reserved MAC 53:54:01:11:43:e7 is a multicast address",
    seed_says="dnsmasq.conf: `dhcp-host=53:54:01:11:43:e7,192.168.1.235`",
    what_happens="0x53 has the I/G bit set: no network card can have this MAC (the kernel "
    "refuses it: `Cannot assign requested address`), so no real device ever gets .235. dnsmasq "
    "honours it for a DHCP packet whose chaddr says so; the lab's check sends exactly that",
    evidence="lab exec c1 -- ip link add mv0 link eth0 address 53:54:01:11:43:e7 type macvlan",
    fixed_by_lab=False,
))

FINDINGS = (*FINDINGS, Finding(
    id="F12",
    title="a short deadtime fails over to nobody: drbddisk gives up before DRBD sees the peer die",
    seed_says="ha.cf deadtime (10 s in the seed) with drbd0.res at DRBD's default ping-int (10 s); "
    "drbddisk tries `drbdadm primary` 6 times, 1 s apart",
    what_happens="measured with deadtime 1.5 s and the seed's .res: lsvm2 lost power at t=0, "
    "heartbeat ran drbddisk at ~1.5 s, DRBD (the lab's replicator) still saw the peer connected "
    "and refused Primary until `PingAck did not arrive in time` at 9.7 s; drbddisk gave up at "
    "~7.5 s, heartbeat logged `CRIT: Giving up resources due to failure of drbddisk::drbd0` and "
    "no node served DNS/DHCP. The seed's own deadtime 10 s clears DRBD's 10 s only by the "
    "retries' margin; the fast profile sets `ping-int 1`",
    evidence="lab up --profile fast with drbd.ping_int_s = 0; lab crash lsvm2; "
    "lab exec lsvm1 -- grep -A1 drbddisk /var/log/ha-log",
    fixed_by_lab=False,
), Finding(
    id="F13",
    title="new clients arriving together wait for dnsmasq's ping check, one after another",
    seed_says="dnsmasq.conf has no `no-ping`: before offering an address no lease names, dnsmasq "
    "pings it and waits ~3 s for an echo reply",
    what_happens="while it waits dnsmasq handles no other DHCP packet, so a burst of new clients "
    "is served one every 3-4 s. Measured on the seed profile, no fault, 10 fleet clients asking "
    "at once: first OFFERs after 3.0, 6.0 and 9.0 s, the other seven after 11.9 s "
    "(`scenarios/test_findings.py -k F13`; `lab measure` once: 3.7, 7.7, 11.7, then 15.7 s); "
    "dnsmasq stops pinging once it has pinged a lot in the last 30 s. The first client's "
    "REQUEST waited behind the other clients' pings: in the `lab measure` run it bound at "
    "15.7 s. After a failover this adds "
    "to the outage for every client the lease file does not know yet: in the seed-profile crash "
    "run (bench/seed-crash-takeover.png) the 10-client fleet's longest wait for an ACK was "
    "55 s, against a 24 s DNS takeover. Clients the lease file knows are not pinged. DNS over "
    "TCP stalls meanwhile (UDP does not): in the first nightly's seed runs of "
    "`split_brain_heartbeat_link` and `asymmetric_heartbeat_loss` (3 each), while 20 fleet "
    "clients bound (~24 s, before any fault), 902-940 of 940-978 TCP queries from c1 got no "
    "answer within the probe's 0.2 s, against none of the UDP queries and none of the TCP "
    "queries once the fleet was bound",
    evidence="pytest scenarios/test_findings.py -k F13 (seed profile vs fast, which sets "
    "no-ping); or: lab up; lab measure --duration 30 --clients c1 --dhcp-clients 10 --out /tmp/m; "
    "lab exec lsvm2 -- grep DHCPOFFER /var/log/syslog",
    fixed_by_lab=False,
), Finding(
    id="F14",
    title="after a takeover an IPv6 VIP can be configured nowhere while heartbeat reports every "
    "resource acquired",
    seed_says="haresources: `IPv6addr::…c0a8:0104/64/enp2s1 IPv6addr::…c0a8:0304/64/enp2s1.3`, "
    "run by heartbeat's stock IPv6addr wrapper",
    what_happens="ResourceManager asks `status` before each `start` and skips the start if the "
    "answer says running. Heartbeat's wrapper maps `status` to the agent's `monitor` (its own "
    "comment: 'Mapping this to monitor is a bug'), and `monitor` pings the VIP on a raw ICMPv6 "
    "socket and counts any ICMPv6 packet that arrives within ~30 ms as the reply. With ICMPv6 "
    "traffic on the node (neighbour discovery, a client's ping), the VIP is declared running, "
    "never configured, and heartbeat logs `Running OK` for it and `takeover complete`. Seen "
    "in 2 of 2 full `make test` runs (CI's and a local one; 0 of 4 runs of that test alone), "
    "in the crash scenario with a DNS probe at 50 Hz: lsvm1 held 192.168.1.4, 192.168.3.4 and "
    "…c0a8:104, nobody held …c0a8:304, for as long as anyone looked. "
    "`scenarios/test_findings.py` makes it happen every time with a bounded ping from c1 to "
    "lsvm1 during the takeover, and shows the lab's wrapper does not lose the VIP under the same "
    "traffic",
    evidence="pytest scenarios/test_findings.py -k F14; or: lab up --keep-finding F14; "
    "lab exec c1 -- ping -6 -q -i 0.005 -w 60 fe80::215:5dff:fe01:207%eth0 & "
    "lab crash lsvm2; lab exec lsvm1 -- grep 'IPv6addr.*Running OK' /var/log/ha-log",
    fixed_by_lab=True,
))

# Found by the failover suite (scenarios/test_failover.py and friends).
FINDINGS = (*FINDINGS, Finding(
    id="F15",
    title="a hung primary (userland frozen, kernel alive) keeps answering ARP and neighbour "
    "discovery for its VIPs",
    seed_says="heartbeat decides the peer is dead from missing heartbeats only; no STONITH, no "
    "fencing",
    what_happens="the standby takes over while the hung node's kernel still holds every VIP. Two "
    "outcomes were seen in `split_brain_freeze_primary` (profile fast, 26.5 s hang): the "
    "standby's IPv6addr fails DAD against the hung node (`ERROR: Generic error`, `CRIT: Giving "
    "up resources due to failure of IPv6addr`) and nobody serves for the whole hang (29.3 s "
    "without DNS); or the standby serves IPv4 after 12.4 s while IPv6 clients' neighbour entries "
    "stay on the hung node (33.6 s without DNS on the IPv6 VIP, split brain 24.9 s). On thaw "
    "DRBD's after-sb-2pri runs pri-lost-after-sb and the thawed node `reboot -f`s itself; "
    "clients then wait another ~30 s (auto_failback, the stock IPv6addr) before the preferred "
    "node serves again. With the lab's non-blocking IPv6addr (profile fast, no DAD) the "
    "standby's advertisements win and clients were served again after 2.1 s, though both nodes "
    "held every VIP for as long as the hang lasted",
    evidence="pytest scenarios/test_split_brain.py -k freeze -s; or: lab freeze lsvm2; sleep 15; "
    "lab exec lsvm1 -- grep -E 'CRIT|Generic' /var/log/ha-log",
    fixed_by_lab=False,
), Finding(
    id="F16",
    title="cutting heartbeat's port alone never gives two active servers: DRBD refuses the "
    "standby's promotion",
    seed_says="heartbeat on `ucast enp2s1` (port 694), DRBD on 192.168.1.6/7:7788, the same VLAN",
    what_happens="in `split_brain_heartbeat_link` (694/udp dropped both ways, 5 runs of 5) and "
    "`asymmetric_heartbeat_loss` (one way) the standby declares the primary dead and runs "
    "drbddisk, DRBD still sees its Primary peer and refuses, heartbeat logs `CRIT: Giving up "
    "resources due to failure of drbddisk::drbd0`; clients saw no outage (0.0 s) and no VIP was "
    "held twice. When the link returns heartbeat logs `Cluster node lsvm2 returning after "
    "partition` and the pair settles",
    evidence="pytest scenarios/test_split_brain.py -k heartbeat; or: lab partition lsvm1 lsvm2 "
    "--port 694/udp; sleep 15; lab exec lsvm1 -- grep drbddisk /var/log/ha-log; lab heal --all",
    fixed_by_lab=False,
), Finding(
    id="F17",
    title="a cut replication link stalls DNS and DHCP on the primary, and the standby later "
    "promotes its stale disk",
    seed_says="drbd0.res `protocol C`, no `fencing`, DRBD's default timeouts",
    what_happens="in `replication_cut_then_primary_crash` (profile fast, ping-int 1): when "
    "7788/tcp stops, dnsmasq's next lease-file write waits for the peer's ACK until DRBD gives "
    "the peer up, ~6 s without DNS or DHCP on the primary though nothing else failed. Leases "
    "written meanwhile exist on the primary only; when it then dies the standby's disk still "
    "says UpToDate (no fencing outdates it) and drbddisk promotes it: all 10 leases granted "
    "during the cut were gone from the standby's lease file",
    evidence="pytest scenarios/test_service_faults.py -k replication -s; or: lab partition "
    "lsvm1 lsvm2 --port 7788/tcp; lab exec lsvm2 -- drbdadm status",
    fixed_by_lab=False,
), Finding(
    id="F18",
    title="heartbeat in haresources mode watches no resource: a dead dnsmasq stays dead",
    seed_says="`crm off`; dnsmasq started by heartbeat through its init script",
    what_happens="`dnsmasq_crash_on_primary` killed dnsmasq on the active server: heartbeat "
    "noticed nothing, no failover, no restart; clients had no DNS or DHCP for the whole 13 s "
    "window until dnsmasq was restarted by hand",
    evidence="pytest scenarios/test_service_faults.py -k dnsmasq; or: lab kill-service lsvm2 "
    "dnsmasq; lab measure --duration 10 --dhcp-clients 0; lab exec lsvm2 -- "
    "/etc/init.d/dnsmasq start",
    fixed_by_lab=False,
), Finding(
    id="F19",
    title="an orderly handover costs as much as a crash: the stock IPv6addr blocks ~7 s per IPv6 "
    "VIP before dnsmasq starts",
    seed_says="haresources orders `IPv6addr` twice before `dnsmasq`; `auto_failback on`",
    what_happens="`graceful_shutdown_primary` and `reboot_primary_failback` measured 16.2-16.8 s "
    "without DNS for a planned handover, and the same again when the preferred node comes back "
    "(auto_failback). `ipv6addr_takeover_cost` measured the same crash at 17.1 s with the "
    "package's agent and 2.8 s with one that skips DAD and advertises in the background: the "
    "two IPv6 VIPs cost 14.3 s of every takeover",
    evidence='pytest scenarios/test_failover.py -k "graceful or ipv6addr_takeover_cost" -s '
    '--lab-profile seed',
    fixed_by_lab=False,
))

# Found by running the whole suite several times in a row (make soak).
FINDINGS = (*FINDINGS, Finding(
    id="F23",
    title="after a split the pair ends in one of several states, decided by a race: sometimes "
    "nobody serves until an operator acts, sometimes DRBD is left StandAlone",
    seed_says="after-sb-0pri discard-least-changes, after-sb-1pri discard-secondary, "
    "after-sb-2pri call-pri-lost-after-sb (`reboot -f`), rr-conflict left at its default "
    "(disconnect), no STONITH; heartbeat 3 without a CRM",
    what_happens="when a split heals, both nodes hold the group. Three things then race: "
    "heartbeat on one side logs `Both machines own our resources!` and restarts itself, giving "
    "everything up; DRBD's pri-lost-after-sb handler `reboot -f`s the other; and the thawed or "
    "reconnected replicator talks to its peer. Seen in `make soak` and by hand (profile fast, "
    "2026-11-30): (1) *unserved* — the restarted heartbeat and the rebooted node each come back "
    "seeing the other `active`, nobody acquires the group (`lsvm2 wants to go standby "
    "[foreign]` on both), and no VIP or dnsmasq exists for as long as anyone watched (180 s; "
    "`cable_pull_primary`, 1 of 4 runs); (2) *served-unreplicated* — the thawed node's "
    "replicator reconnects within milliseconds, still Primary, meets newer data and logs `I "
    "shall become SyncTarget, but I am primary!` then StandAlone: it serves on from its older "
    "disk (what the survivor wrote meanwhile is not on it) and nothing reconnects "
    "(`split_brain_freeze_primary`, 2 of 5 runs); (3) *healthy* — both are Secondary when DRBD "
    "reconnects, the 0-primaries policy resyncs from the thawed node (discarding the "
    "survivor's writes) and heartbeat gives it the group back. In the F20 case the same kind "
    "of race decides whether lsvm2 takes its group when lsvm1 dies (2 of 6 runs it did). The "
    "scenarios name the endings they accept (`Lab.expect_settled`, lab/recovery.py), log the "
    "one they saw (`pair.settled` in the lab's events) and fail on any other",
    evidence='pytest scenarios/test_network_faults.py scenarios/test_split_brain.py -k '
    '"cable_pull or freeze" --repeat 5 -s; the ending is in each lab\'s events.jsonl',
    fixed_by_lab=False,
))

# The seed's host firewall (fixtures/seed/ufw, rendered by lab.services.firewall).
FINDINGS = (*FINDINGS, Finding(
    id="F20",
    title="the heartbeat rule is typed on both hosts: lsvm1 drops every heartbeat from lsvm2",
    seed_says="`$ sudo ufw allow from 192.168.1.6 to any port 694 proto udp`, \"on both hosts\" "
    "(the DRBD lines just before it are per host)",
    what_happens="on lsvm1 the rule allows only lsvm1 itself (whose own packets arrive on lo "
    "anyway), so ufw's default policy drops lsvm2's heartbeats: each node sends from an "
    "ephemeral port to the peer's 694, so conntrack holds two unrelated flows (`[UNREPLIED]` "
    "both ways) and never lets one in as the other's reply. Measured at a cold start, both "
    "profiles: lsvm1 hears nothing, declares lsvm2 dead at initdead and takes every resource "
    "(`mach_down takeover complete for node lsvm2`); lsvm2 hears lsvm1 but gets no "
    "acknowledgement, logs `all clients are now paused` and never takes its own resources "
    "(`cl_status`: `Heartbeat is stopped on this machine`), so the preferred node never "
    "serves and auto_failback never happens. Worse: when lsvm1 then loses power, lsvm2 logs "
    "`mach_down takeover complete for node lsvm1` but, as a rule (4 of 6 runs), starts "
    "nothing — no VIP, no dnsmasq, for as long as anyone looked (75 s by hand in the seed "
    "profile); in the other runs its own start-up finished first and it took the group (F23). "
    "The lab renders lsvm1's copy of the rule with the "
    "peer's address, 192.168.1.7",
    evidence="pytest scenarios/test_firewall.py -k F20 --lab-profile seed (the kept case boots "
    "without waiting for a ready pair); on a lab up: lab fw lsvm1 (the 694 rule's counter)",
    fixed_by_lab=True,
), Finding(
    id="F21",
    title="the firewall opens 7789/tcp for DRBD, which nothing uses",
    seed_says="`lsvm1$ sudo ufw allow from 192.168.1.7 to any port 7789 proto tcp` (and the "
    "same on lsvm2), next to 7788; drbd0.res has one resource, at port 7788",
    what_happens="harmless here, measured: DRBD uses one TCP port per resource (the `address` "
    "line's, 7788); nothing listens on 7789 on either node (`ss -ltn`), a connection from the "
    "peer is refused at once and one from anyone else is dropped. The rule would matter only "
    "for a second resource on 7789",
    evidence="lab exec lsvm1 -- ss -ltn; lab fw lsvm1",
    fixed_by_lab=False,
), Finding(
    id="F22",
    title="DHCPv6 (547/udp) is not let in: the stateless DHCPv6 half of `ra-stateless` is dead",
    seed_says="dnsmasq.conf: `dhcp-range=set:enp2s1v6,::,constructor:enp2s1,ra-stateless,"
    "ra-names` and `dhcp-option=option6:dns-server,[...]`; the firewall lines open 53/tcp, "
    "53/udp and 67/udp only",
    what_happens="dnsmasq answers DHCPv6 information-requests (`DHCPv6 stateless on enp2s1`), "
    "but ufw's default policy drops them: measured from c1, `dhclient -6 -S` sent 4 "
    "Info-Requests in 12 s and got no reply, the active node's `policy: deny incoming` counter "
    "grew by 4; with 547/udp let in, the first Info-Request is answered (`RCV: Reply message`) "
    "and dnsmasq logs `DHCPINFORMATION-REQUEST(enp2s1)`. Clients that take their IPv6 DNS "
    "server from stateless DHCPv6 rather than the RA never learn it. The lab lets 547/udp in",
    evidence="pytest scenarios/test_firewall.py -k F22; or: lab up --keep-finding F22; "
    "lab exec c1 -- timeout 12 dhclient -6 -S -1 -v -sf /bin/true -lf /tmp/d6 -pf /tmp/d6.pid "
    "eth0",
    fixed_by_lab=True,
))

BY_ID: dict[str, Finding] = {f.id: f for f in FINDINGS}


def markdown_list(findings: tuple[Finding, ...] = FINDINGS) -> str:
    """The README's findings section: one entry per finding, id first."""
    out: list[str] = []
    for f in findings:
        fixed = " *(the lab works around it; see the changes table)*" if f.fixed_by_lab else ""
        out.append(
            f"- **{f.id} — {f.title}**{fixed}\n"
            f"  - seed: {f.seed_says}\n"
            f"  - what happens: {f.what_happens}\n"
            f"  - evidence: `{f.evidence}`"
        )
    return "\n".join(out) + "\n"
