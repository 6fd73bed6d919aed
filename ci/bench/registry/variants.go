package main

// defaultVariants are the connected-registry configurations of the single-pull benchmark: the chart's
// defaults last.
func defaultVariants() []variant {
	return []variant{{name: "chart defaults"}}
}

// defaultOutageVariants are those of the outage benchmark.
func defaultOutageVariants() []variant {
	return []variant{{name: "chart defaults"}}
}
