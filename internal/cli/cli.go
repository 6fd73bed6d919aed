// Package cli is the flag handling the project's binaries share: every flag has an environment twin, which
// sets the flag's value unless the flag is given on the command line.
package cli

import (
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// LookupEnv reads an environment variable, as os.LookupEnv does. Tests pass a map's lookup instead.
type LookupEnv func(key string) (string, bool)

// MapEnv returns a LookupEnv reading m.
func MapEnv(m map[string]string) LookupEnv {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// FlagSet registers the flags of one command.
type FlagSet struct {
	fs   *flag.FlagSet
	env  LookupEnv
	errs []error
}

// NewFlagSet returns a FlagSet that reads the environment through env and prints usage to usageOut.
func NewFlagSet(name string, env LookupEnv, usageOut io.Writer) *FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(usageOut)
	return &FlagSet{fs: fs, env: env}
}

// Var registers a flag whose value is read from the environment variable envName when set there.
func (f *FlagSet) Var(v flag.Value, name, envName, usage string) {
	if s, ok := f.env(envName); ok {
		if err := v.Set(s); err != nil {
			f.errs = append(f.errs, fmt.Errorf("environment variable %s=%q is not a valid value of --%s: %w", envName, s, name, err))
		}
	}
	f.fs.Var(v, name, fmt.Sprintf("%s (env %s)", usage, envName))
}

// StringVar registers a string flag with default def.
func (f *FlagSet) StringVar(p *string, name, envName, def, usage string) {
	*p = def
	f.Var((*stringValue)(p), name, envName, usage)
}

// BoolVar registers a boolean flag with default def.
func (f *FlagSet) BoolVar(p *bool, name, envName string, def bool, usage string) {
	*p = def
	f.Var((*boolValue)(p), name, envName, usage)
}

// StringsVar registers a repeatable flag; its environment twin holds the values separated by commas. Values
// given on the command line replace those of the environment.
func (f *FlagSet) StringsVar(p *[]string, name, envName, usage string) {
	v := &stringsValue{p: p}
	if s, ok := f.env(envName); ok {
		for _, e := range strings.Split(s, ",") {
			if e = strings.TrimSpace(e); e != "" {
				*p = append(*p, e)
			}
		}
	}
	f.fs.Var(v, name, fmt.Sprintf("%s; repeatable (env %s, comma-separated)", usage, envName))
}

// Parse parses args after the environment has been applied; flags win over the environment.
func (f *FlagSet) Parse(args []string) error {
	if err := f.fs.Parse(args); err != nil {
		return err
	}
	if len(f.errs) > 0 {
		return f.errs[0]
	}
	return nil
}

// Args returns the arguments left after the flags.
func (f *FlagSet) Args() []string { return f.fs.Args() }

// SetUsage makes -h print header, then the flags' help.
func (f *FlagSet) SetUsage(header string) {
	f.fs.Usage = func() {
		fmt.Fprint(f.fs.Output(), header)
		f.fs.PrintDefaults()
	}
}

// PrintDefaults writes the flags' help to w.
func (f *FlagSet) PrintDefaults(w io.Writer) {
	f.fs.SetOutput(w)
	f.fs.PrintDefaults()
}

type stringValue string

func (s *stringValue) Set(v string) error { *s = stringValue(v); return nil }
func (s *stringValue) String() string {
	if s == nil {
		return ""
	}
	return string(*s)
}

type boolValue bool

func (b *boolValue) Set(v string) error {
	x, err := strconv.ParseBool(strings.TrimSpace(v))
	if err != nil {
		return fmt.Errorf("want true or false")
	}
	*b = boolValue(x)
	return nil
}
func (b *boolValue) String() string   { return strconv.FormatBool(b != nil && bool(*b)) }
func (b *boolValue) IsBoolFlag() bool { return true }

type stringsValue struct {
	p       *[]string
	touched bool
}

func (s *stringsValue) Set(v string) error {
	if !s.touched {
		*s.p, s.touched = nil, true
	}
	*s.p = append(*s.p, v)
	return nil
}

func (s *stringsValue) String() string {
	if s == nil || s.p == nil {
		return ""
	}
	return strings.Join(*s.p, ",")
}

// DurationVar registers a duration flag (Go syntax: 90s, 5m, 2h30m) with default def.
func (f *FlagSet) DurationVar(p *time.Duration, name, envName string, def time.Duration, usage string) {
	*p = def
	f.Var((*durationValue)(p), name, envName, usage)
}

// IntVar registers an integer flag with default def.
func (f *FlagSet) IntVar(p *int, name, envName string, def int, usage string) {
	*p = def
	f.Var((*intValue)(p), name, envName, usage)
}

// ListVar registers a flag that takes a comma-separated list, and may be repeated; the environment variable
// holds a comma-separated list too. Empty items are dropped.
func (f *FlagSet) ListVar(p *[]string, name, envName string, def []string, usage string) {
	*p = def
	lv := &listValue{p: p}
	f.Var(lv, name, envName, usage)
	// The command line replaces what the environment gave, as for every other flag.
	lv.set = false
}

type durationValue time.Duration

func (d *durationValue) Set(v string) error {
	parsed, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil {
		return fmt.Errorf("want a duration like 30s, 5m or 2h")
	}
	*d = durationValue(parsed)
	return nil
}
func (d *durationValue) String() string {
	if d == nil {
		return "0s"
	}
	return time.Duration(*d).String()
}

type intValue int

func (i *intValue) Set(v string) error {
	parsed, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		return fmt.Errorf("want a whole number")
	}
	*i = intValue(parsed)
	return nil
}
func (i *intValue) String() string {
	if i == nil {
		return "0"
	}
	return strconv.Itoa(int(*i))
}

// listValue replaces its default on the first Set, then appends.
type listValue struct {
	p   *[]string
	set bool
}

func (l *listValue) Set(v string) error {
	if !l.set {
		*l.p = nil
		l.set = true
	}
	for _, item := range strings.Split(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			*l.p = append(*l.p, item)
		}
	}
	return nil
}
func (l *listValue) String() string {
	if l == nil || l.p == nil {
		return ""
	}
	return strings.Join(*l.p, ",")
}
