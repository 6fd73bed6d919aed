package main

import (
	"runtime"
	"testing"
)

func TestGreetingNamesTheArchitecture(t *testing.T) {
	t.Parallel()
	if got, want := greeting(), "hello from "+runtime.GOARCH; got != want {
		t.Fatalf("greeting() = %q, want %q", got, want)
	}
}
