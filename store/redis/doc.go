// Package redis is the Redis implementation of store.Store, for Redis 7 standalone, Sentinel or Cluster.
//
// # URLs
//
// Open accepts (see ParseURL):
//
//	redis://[[user]:password@]host[:6379][/db][?params]
//	rediss://...                                      same, over TLS
//	redis+sentinel://[[user]:password@]host1[:26379],host2[:26379]/mastername[/db][?params]
//	rediss+sentinel://...                             same, over TLS
//	redis+cluster://[[user]:password@]host1:7000,host2:7001[?params]
//	rediss+cluster://...                              same, over TLS
//
// The user and password authenticate to Redis (for Sentinel: to the master and replicas; the sentinels' own
// credentials go in the sentinel_username and sentinel_password parameters). Percent-encode reserved
// characters in them. Other parameters: client_name, protocol (2 or 3), dial_timeout, read_timeout,
// write_timeout (Go durations, or seconds), pool_size, min_idle_conns, max_retries. Unknown parameters are
// refused. Errors never quote the URL, so the password is never logged; RedactURL gives a form safe to log.
//
// # Key layout
//
// Every key starts with Options.Prefix (default "{jit}"), whose hash tag puts all of jitbot's keys in one
// Cluster slot, so the multi-key Lua scripts work on Redis Cluster. Scripts receive every key in KEYS.
//
//	P:req:<id>              HASH  v (version), j (record JSON), x (JSON list of index keys it occupies)
//	P:grant:<id>            HASH  same fields
//	P:idx:due               ZSET  grant id, score DueAt ms (or, once claimed, the hidden-until ms)
//	P:idx:pending           ZSET  pending request id, score PendingUntil ms
//	P:idx:req:pending       ZSET  pending request id, score CreatedAt ms
//	P:idx:req:user:<user>   ZSET  request id by requester, score CreatedAt ms
//	P:idx:grant:user:<user> ZSET  grant id by holder, score CreatedAt ms
//	P:idx:grant:bind:<key>  ZSET  live grant id by BindingKey, score CreatedAt ms
//	P:idx:grant:state:<s>   ZSET  live grant id by state, score CreatedAt ms
//	P:audit:seq             STRING last audit sequence number (INCR)
//	P:audit:head            STRING hash of the last audit record
//	P:audit:log             HASH  field <seq>: "<prev hash>\n<hash>\n<raw event JSON>"
//	P:lock:<name>           STRING "<holder>|<fence>", with a PX expiry
//	P:lock-fence:<name>     STRING fence counter (INCR)
//	P:seen:<key>            STRING "1", with a PX expiry
//	P:counter:<key>         HASH  v, j (store.Counter JSON), x ("[]"): limit counters such as break-glass use
//
// Index entries are computed in Go from each new record; the commit script removes the entries listed in the
// record's x field and adds the new ones, so the script itself knows nothing about records.
//
// The audit chain links (store.ChainHash) are computed by the client against the head it last saw; the commit
// script compare-and-sets the head, so sequence numbers, hashes and records land in one atomic step and Redis
// spends no time hashing. When another replica moved the head, the script answers "stale" with the current
// head and the client re-chains and retries.
package redis
