package main

// defaultVariants are the connected-registry configurations of the single-pull benchmark, the chart's
// defaults last: the settings the benchmark changed in the chart, at their earlier values, show the effect
// of each change in the same run.
func defaultVariants() []variant {
	return []variant{
		{name: "before: HTTP/2 to clients and parent", set: []string{"registry.http2=true", "registry.parent.http2=true"}},
		{name: "chart defaults"},
	}
}

// defaultOutageVariants are those of the outage benchmark.
func defaultOutageVariants() []variant {
	return []variant{{name: "chart defaults"}}
}
