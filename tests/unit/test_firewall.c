/* test_firewall.c - the rule-set generator (src/lib/firewall.c): the policy
 * of docs/firewall.md as text, checked line by line. The rules are loaded
 * into a kernel by tests/integration/test_firewall.py. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alerts.h"
#include "check.h"
#include "config.h"
#include "firewall.h"

static char buf[FW_RULES_MAX];
static char err[FW_ERR_MAX];

static struct config *parse(const char *text)
{
	static struct config_errors errs;
	struct config *cfg = config_parse("t.conf", text, strlen(text), &errs);

	if (!cfg)
		for (int i = 0; i < errs.count; i++)
			fprintf(stderr, "%s\n", errs.e[i].text);
	return cfg;
}

/* 1 when buf holds line as a whole line. */
static int has_line(const char *line)
{
	size_t n = strlen(line);

	for (const char *p = buf; (p = strstr(p, line)) != NULL; p++)
		if ((p == buf || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0'))
			return 1;
	return 0;
}

static int count(const char *needle)
{
	int n = 0;

	for (const char *p = buf; (p = strstr(p, needle)) != NULL; p++)
		n++;
	return n;
}

static const char base[] = "mail-domain example.com\n";

static void t_router_defaults(void)
{
	struct config *cfg = parse(base);

	CHECK(cfg != NULL);
	CHECK(firewall_rules(cfg, FW_IPV4, buf, sizeof buf, err, sizeof err) > 0);
	CHECK(has_line(":INPUT DROP [0:0]"));
	CHECK(has_line(":FORWARD DROP [0:0]"));
	CHECK(has_line("-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"));
	CHECK(has_line("-A INPUT -p icmp -m limit --limit 5/sec --limit-burst 20 -j ACCEPT"));
	CHECK(has_line("-A INPUT -p icmp --icmp-type echo-request -m limit --limit 5/sec "
	               "--limit-burst 20 -j ACCEPT"));
	CHECK(has_line("-A INPUT -p icmp --icmp-type echo-request -j DROP"));
	/* the LAN reaches the box's services; nothing else reaches it */
	CHECK(has_line("-A INPUT -i eth1 -j postern-in-lan"));
	CHECK(has_line("-A INPUT -i eth1 -p udp --sport 68 --dport 67 -j ACCEPT"));
	CHECK(has_line("-A postern-in-lan -p tcp -m multiport --dports 53,80,143,443,465,587,993 -j ACCEPT"));
	CHECK(count("--dport 25 ") == 0);    /* port25 is off */
	CHECK(count("-i eth0") == 0);        /* no rule opens anything to the WAN */
	/* blocked ports with a reset, DoT, DNS redirect, NAT */
	CHECK(has_line("-A FORWARD -i eth1 -o eth0 -j postern-forward"));
	CHECK(has_line("-A postern-forward -p tcp -m multiport --dports 25,465,587,2525,110,995,143,993 -j postern-block"));
	CHECK(has_line("-A postern-forward -p tcp --dport 853 -j postern-block"));
	CHECK(has_line("-A postern-block -p tcp -j REJECT --reject-with tcp-reset"));
	CHECK(has_line("-A postern-block -m limit --limit 6/min --limit-burst 10 -j LOG "
	               "--log-prefix \"postern-fw blocked: \" --log-level 4"));
	CHECK(has_line("-A PREROUTING -i eth1 -p udp --dport 53 ! -d 192.168.10.1 "
	               "-j DNAT --to-destination 192.168.10.1:53"));
	CHECK(has_line("-A POSTROUTING -o eth0 -s 192.168.10.0/24 -j MASQUERADE"));
	CHECK(has_line("-A postern-forward -s 192.168.10.0/24 -j ACCEPT"));
	/* one counter per host of the /24 (.1-.254), the prefix, the rest */
	CHECK_EQ(count("-A postern-count "), 256);
	CHECK(has_line("-A postern-count -s 192.168.10.77/32 -j RETURN"));
	CHECK_EQ(count("COMMIT"), 2);
	config_free(cfg);
}

static void t_reject_and_options(void)
{
	struct config *cfg = parse("mail-domain example.com\n[lan]\ninterface br0\n"
	                           "bridge-ports eth1 eth2\naddress 10.1.0.1/16\ndhcp no\n"
	                           "[smtp]\nport25 yes\nport25-hosts 10.1.0.9 2001:db8::9\n"
	                           "[firewall]\nforeign-dns reject\nlog-blocked no\n"
	                           "blocked-ports 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17\n"
	                           "allow 10.1.0.50 25\nallow 10.1.0.64/28\nallow 2001:db8::5 587\n");

	CHECK(cfg != NULL);
	CHECK(firewall_rules(cfg, FW_IPV4, buf, sizeof buf, err, sizeof err) > 0);
	CHECK(count("DNAT") == 0);
	CHECK(count("-j LOG") == 0);
	CHECK(count("--dport 67") == 0);
	CHECK(has_line("-A INPUT -i br0 -j postern-in-lan"));
	CHECK(has_line("-A postern-in-lan -s 10.1.0.9/32 -p tcp --dport 25 -j ACCEPT"));
	CHECK(count("2001:db8") == 0);
	/* 17 ports: split at the 15 that xt_multiport takes */
	CHECK(has_line("-A postern-forward -p tcp -m multiport --dports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15 -j postern-block"));
	CHECK(has_line("-A postern-forward -p tcp -m multiport --dports 16,17 -j postern-block"));
	CHECK(has_line("-A postern-forward -s 10.1.0.50/32 -p tcp -m multiport --dports 25 -j ACCEPT"));
	CHECK(has_line("-A postern-forward -s 10.1.0.64/28 -p tcp -m multiport --dports 16,17 -j ACCEPT"));
	CHECK(strstr(buf, "-s 10.1.0.50/32") < strstr(buf, "-j postern-block"));
	CHECK(has_line("-A postern-forward -p udp --dport 53 -j postern-block"));
	/* a /16 is too big for per-host counters: the prefix and the rest */
	CHECK_EQ(count("-A postern-count "), 2);
	CHECK(firewall_rules(cfg, FW_IPV6, buf, sizeof buf, err, sizeof err) > 0);
	CHECK(has_line("-A postern-in-lan -s 2001:db8::9/128 -p tcp --dport 25 -j ACCEPT"));
	CHECK(has_line("-A postern-forward -s 2001:db8::5/128 -p tcp -m multiport --dports 587 -j ACCEPT"));
	CHECK(count("10.1.") == 0);
	config_free(cfg);
}

static void t_ipv6(void)
{
	struct config *cfg = parse("mail-domain example.com\n[lan]\naddress6 2001:db8:1::1/64\n");

	CHECK(cfg != NULL);
	CHECK(firewall_rules(cfg, FW_IPV6, buf, sizeof buf, err, sizeof err) > 0);
	CHECK(count("*nat") == 0);
	CHECK(has_line("-A INPUT -p ipv6-icmp --icmpv6-type 135 -j ACCEPT"));
	CHECK(has_line("-A INPUT -p ipv6-icmp -m limit --limit 5/sec --limit-burst 20 -j ACCEPT"));
	CHECK(has_line("-A INPUT -p ipv6-icmp --icmpv6-type echo-request -j DROP"));
	CHECK(has_line("-A postern-forward -s 2001:db8:1::/64 -j ACCEPT"));
	CHECK(has_line("-A postern-block -j REJECT --reject-with icmp6-port-unreachable"));
	/* the IPv6 LAN's DNS is blocked, never redirected (dnsd answers on IPv4) */
	CHECK(has_line("-A postern-forward -p udp --dport 53 -j postern-block"));
	CHECK(count("192.168.") == 0);
	/* one counter per full address for the hand-numbered hosts ::1-::3ff,
	 * then the rest of the /64, then anything else */
	CHECK_EQ(count("-A postern-count "), FW_COUNT_HOSTS_MAX - 1 + 2);
	CHECK(has_line("-A postern-count -s 2001:db8:1::1/128 -j RETURN"));
	CHECK(has_line("-A postern-count -s 2001:db8:1::50/128 -j RETURN"));
	CHECK(has_line("-A postern-count -s 2001:db8:1::3ff/128 -j RETURN"));
	CHECK(!has_line("-A postern-count -s 2001:db8:1::400/128 -j RETURN"));
	CHECK(!has_line("-A postern-count -s 2001:db8:1::/128 -j RETURN"));
	CHECK(has_line("-A postern-count -s 2001:db8:1::/64 -j RETURN"));
	config_free(cfg);
	/* a small prefix is enumerated whole, its host bits cleared first */
	cfg = parse("mail-domain example.com\n[lan]\naddress6 fd00:10::1:1/120\n");
	CHECK(cfg != NULL);
	CHECK(firewall_rules(cfg, FW_IPV6, buf, sizeof buf, err, sizeof err) > 0);
	CHECK_EQ(count("-A postern-count "), 255 + 2);
	CHECK(has_line("-A postern-count -s fd00:10::1:1/128 -j RETURN"));
	CHECK(has_line("-A postern-count -s fd00:10::1:ff/128 -j RETURN"));
	CHECK(has_line("-A postern-count -s fd00:10::1:0/120 -j RETURN"));
	config_free(cfg);
	/* no IPv6 prefix: no per-host counters */
	cfg = parse(base);
	CHECK(cfg != NULL);
	CHECK(firewall_rules(cfg, FW_IPV6, buf, sizeof buf, err, sizeof err) > 0);
	CHECK_EQ(count("-A postern-count "), 1);
	config_free(cfg);
}

static void t_single_interface(void)
{
	struct config *cfg = parse("mail-domain example.com\n[lan]\ninterface eth0\n"
	                           "address 192.168.1.5/24\ngateway 192.168.1.1\n"
	                           "[firewall]\nsingle-interface yes\n");

	CHECK(cfg != NULL);
	CHECK(firewall_rules(cfg, FW_IPV4, buf, sizeof buf, err, sizeof err) > 0);
	CHECK(has_line("-A INPUT -i eth0 -s 192.168.1.0/24 -j postern-in-lan"));
	CHECK(count("-A FORWARD") == 0);
	CHECK(count("--dport 67") == 0);      /* the office router serves DHCP */
	CHECK(count("MASQUERADE") == 0);
	CHECK(count("DNAT") == 0);
	CHECK(has_line("*nat"));         /* emitted empty: flushes router-mode NAT */
	CHECK(firewall_office_rules(cfg, buf, sizeof buf, err, sizeof err) > 0);
	CHECK(has_line("-A FORWARD -i LAN -o WAN -j postern-forward"));
	CHECK(has_line("-A postern-forward -s 192.168.1.5 -j ACCEPT"));
	CHECK(strstr(buf, "-s 192.168.1.5 -j ACCEPT") < strstr(buf, "-j postern-block"));
	CHECK(has_line("-A PREROUTING -i LAN ! -s 192.168.1.5 -p udp --dport 53 ! -d 192.168.1.5 "
	               "-j DNAT --to-destination 192.168.1.5:53"));
	CHECK(has_line("-A POSTROUTING -o LAN -s 192.168.1.0/24 -d 192.168.1.5 -p udp --dport 53 -j MASQUERADE"));
	CHECK(has_line("-A POSTROUTING -o WAN -s 192.168.1.0/24 -j MASQUERADE"));
	config_free(cfg);
}

static void t_errors(void)
{
	struct config *cfg = parse("mail-domain example.com\n[lan]\ninterface eth0\n");

	CHECK(cfg != NULL);
	CHECK_EQ(firewall_rules(cfg, FW_IPV4, buf, sizeof buf, err, sizeof err), -1);
	CHECK(strstr(err, "single-interface") != NULL);
	config_free(cfg);
	cfg = parse(base);
	CHECK_EQ(firewall_rules(cfg, FW_IPV4, buf, 100, err, sizeof err), -1);
	CHECK(strstr(err, "does not fit") != NULL);
	CHECK(strlen(buf) < 100);
	CHECK_EQ(firewall_rules(cfg, 7, buf, sizeof buf, err, sizeof err), -1);
	config_free(cfg);
}

static void t_counts(void)
{
	struct fw_count c[4];
	const char *save =
		"*filter\n:INPUT DROP [0:0]\n"
		"[0:0] -A postern-count -s 192.168.10.2/32 -j RETURN\n"
		"[3:180] -A postern-count -s 192.168.10.23/32 -j RETURN\n"
		"[9:540] -A postern-forward -s 192.168.10.0/24 -j ACCEPT\n"
		"[2:120] -A postern-count -s 2001:db8::7/128 -j RETURN\n"
		"[1:60] -A postern-count -s 192.168.10.0/24 -j RETURN\n"
		"[5:300] -A postern-count -j RETURN\n"
		"[6:300] -A postern-count -s 10.0.0.1/32 -j RETURN\n";

	CHECK_EQ(firewall_parse_counts(save, c, 4), 4);
	CHECK_STREQ(c[0].host, "192.168.10.23");
	CHECK_EQ(c[0].packets, 3);
	CHECK_STREQ(c[1].host, "2001:db8::7");
	CHECK_STREQ(c[2].host, "192.168.10.0/24");
	CHECK_STREQ(c[3].host, "other");
	CHECK_EQ(c[3].packets, 5);
	CHECK_EQ(firewall_parse_counts("[x:1] -A postern-count\n[1:1]\n[", c, 4), 0);
}

/* The last-resort rule set: fixed text, the LAN's name the only input. */
static void t_fallback(void)
{
	CHECK(firewall_fallback_rules(FW_IPV4, "eth1", buf, sizeof buf) > 0);
	CHECK(has_line(":INPUT DROP [0:0]"));
	CHECK(has_line(":FORWARD DROP [0:0]"));
	CHECK(has_line(":postern-fallback - [0:0]"));
	CHECK(has_line("-A INPUT -i lo -j ACCEPT"));
	CHECK(has_line("-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"));
	CHECK(has_line("-A INPUT -i eth1 -j postern-fallback"));
	CHECK(has_line("-A postern-fallback -p tcp --dport 443 -j ACCEPT"));
	CHECK(has_line("-A postern-fallback -p tcp --dport 80 -j ACCEPT"));
	CHECK(has_line("-A postern-fallback -p udp --dport 53 -j ACCEPT"));
	CHECK(has_line("-A postern-fallback -p udp --sport 68 --dport 67 -j ACCEPT"));
	CHECK_EQ(count("-A FORWARD"), 0);           /* nothing forwarded */
	CHECK_EQ(count("-A INPUT"), 3);             /* lo, replies, the LAN jump */
	CHECK_EQ(count("ACCEPT\n"), 7);
	CHECK_EQ(count("*nat"), 0);
	CHECK(firewall_fallback_rules(FW_IPV6, "br-lan", buf, sizeof buf) > 0);
	CHECK(has_line("-A INPUT -p ipv6-icmp --icmpv6-type 135 -j ACCEPT"));
	CHECK(has_line("-A INPUT -i br-lan -j postern-fallback"));
	CHECK_EQ(count("--dport 67"), 0);
	/* Without a name, or with one iptables might refuse: nothing from the LAN. */
	const char *bad[] = { NULL, "", "eth1 -j ACCEPT", "a-name-far-too-long", "eth+" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		CHECK(firewall_fallback_rules(FW_IPV4, bad[i], buf, sizeof buf) > 0);
		CHECK(has_line(":postern-fallback - [0:0]"));
		CHECK_EQ(count("postern-fallback"), 1);
		CHECK_EQ(count("--dport"), 0);
	}
	CHECK_EQ(firewall_fallback_rules(FW_IPV4, "eth1", buf, 64), -1);
}

/* The dashboard's alert for a box in fallback (alerts.c). */
static void t_fallback_alert(void)
{
	static struct alert_facts f;
	struct alert a[4];

	memset(&f, 0, sizeof f);
	f.disk_pct = f.queued = -1;
	CHECK_EQ(alerts_eval(&f, a, 4), 0);
	snprintf(f.firewall, sizeof f.firewall, "the fallback rule set is in force");
	CHECK_EQ(alerts_eval(&f, a, 4), 1);
	CHECK_STREQ(a[0].key, "firewall");
	CHECK(strstr(a[0].text, "fallback: the fallback rule set is in force") != NULL);
}

int main(void)
{
	RUN(t_router_defaults);
	RUN(t_reject_and_options);
	RUN(t_ipv6);
	RUN(t_single_interface);
	RUN(t_errors);
	RUN(t_counts);
	RUN(t_fallback);
	RUN(t_fallback_alert);
	return check_done();
}
