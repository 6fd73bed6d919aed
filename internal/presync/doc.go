// Package presync is the scheduled pre-sync: on the schedule of the chart's sync CronJob, it makes the connected
// registry hold a declared list of repositories, tags and platforms before the site needs them, and reports what
// it holds in a status ConfigMap.
//
// It stores nothing itself. It asks the registry, through its Service, for every selected manifest and blob, as
// a node pulling them would: Distribution's pull-through cache fetches what it lacks from the parent (through the
// parent gate) and stores it as it passes. A blob is asked for with If-None-Match, which the registry answers 304
// from its cache without moving its bytes, so only what the registry lacks crosses the uplink, once. A tag is
// asked for by name with If-None-Match naming the digest synced last, which the registry answers 304 after asking
// the parent where the tag points: an unchanged tag costs one small request, a moved one is synced anew.
//
// Distribution answers from its cache whenever the parent fails, so a tag looks unchanged with the parent down.
// Each repository therefore starts with a probe: a manifest by a digest no registry holds, which the registry can
// only ask the parent for, and whose answer is the parent's verdict on the repository (served, not found, outside
// the sync token's scope, or unreachable).
//
// A run ends when everything is synced or its window does. With a window, a blob is started only when it should
// end before the window does (from the bandwidth cap or the rate measured so far), so a run stops cleanly between
// blobs. What it did not reach is left for the next run, which finds the blobs already stored and moves only the
// rest. The status (Status) is the one record of all this: the ConfigMap's status.json, its summary, the Events,
// and what metrics will read.
//
// The values are checked as the chart checks them (ParseSchedule, ParseWindow, ParseBandwidth,
// ParseRepositories), with the same messages.
package presync
