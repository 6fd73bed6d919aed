package main

// The chart values this benchmark changed, at their earlier settings: each variant shows the effect of a change
// in the same run as the chart's defaults.
var (
	http2Before = []string{"registry.http2=true", "registry.parent.http2=true"}
	noGate      = "registry.parent.responseTimeout=0s"
	noShare     = "registry.parent.shareFetches=false"
)

// defaultVariants are the connected-registry configurations of the single-pull benchmark, the chart's
// defaults last (the concurrency benchmarks use those).
func defaultVariants() []variant {
	return []variant{
		{name: "before: HTTP/2, no parent gate", set: append(append([]string{}, http2Before...), noGate)},
		{name: "HTTP/1.1, no parent gate", set: []string{noGate}},
		{name: "chart defaults"},
	}
}

// defaultOutageVariants are those of the outage benchmark: without and with the parent gate.
func defaultOutageVariants() []variant {
	return []variant{
		{name: "before: no parent gate", set: []string{noGate}},
		{name: "chart defaults"},
	}
}

// defaultColdVariants are those of the concurrent cold-pull benchmark: without and with shared fetches.
func defaultColdVariants() []variant {
	return []variant{
		{name: "before: the gate only tunnels", set: []string{noShare}},
		{name: "chart defaults"},
	}
}
