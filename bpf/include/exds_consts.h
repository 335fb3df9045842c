/* Constants the programs need that vmlinux.h cannot carry (it holds types and enums, not
 * #defines), and the default capacities of our maps. Capacities are defaults only: the loader
 * may resize any map before load (bpf_map__set_max_entries), so nothing here is config. */
#ifndef EXDS_CONSTS_H
#define EXDS_CONSTS_H

#define ETH_P_IP       0x0800
#define ETH_P_IPV6     0x86DD
#define ETH_P_8021Q    0x8100
#define ETH_P_8021AD   0x88A8
#define ETH_ALEN       6

#define AF_INET        2
#define AF_INET6       10

/* IPv6 extension headers (#defines in linux/in6.h, so not in vmlinux.h) */
#define IPPROTO_HOPOPTS  0
#define IPPROTO_ROUTING  43
#define IPPROTO_FRAGMENT 44
#define IPPROTO_DSTOPTS  60

#define IP_MF          0x2000
#define IP_OFFSET      0x1FFF

#define TC_ACT_OK      0
#define TC_ACT_SHOT    2

/* VLAN tags and IPv6 extension headers we are willing to walk before giving up (and passing). */
#define EXDS_MAX_VLAN_DEPTH   2
#define EXDS_MAX_IPV6_EXTHDRS 4

/* Default map capacities. */
#define EXDS_MAX_PORTS        65536   /* listener ports (a full port range fits) */
#define EXDS_MAX_UPSTREAMS    16384   /* upstream endpoints whose sockets SKB splice tracks */
#define EXDS_MAX_SOCKS        131072  /* tracked sockets: two per spliced connection */
#define EXDS_MAX_LISTENERS    1024    /* listening sockets sk_lookup can steer to */
#define EXDS_MAX_FW_RULES     4096    /* drop rules (LPM entries and counters) */

#endif
