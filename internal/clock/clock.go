// Package clock is the time source of the product's logic. Code that judges certificates, waits or reports times
// takes a Clock, so tests can fix or move time; k8s.io/utils/clock.PassiveClock satisfies it.
package clock

import "time"

// Clock tells the time.
type Clock interface {
	Now() time.Time
}

// Real is the system's clock.
type Real struct{}

// Now returns the current time.
func (Real) Now() time.Time { return time.Now() }

// Or returns c, or the real clock when c is nil.
func Or(c Clock) Clock {
	if c == nil {
		return Real{}
	}
	return c
}
