package cmd

import (
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// LookupEnv reads an environment variable, as os.LookupEnv does. Tests pass a map instead.
type LookupEnv func(key string) (string, bool)

// FlagSet registers the flags of one command. Every flag has an environment twin: the variable sets the
// flag's value unless the flag is given on the command line.
type FlagSet struct {
	fs   *flag.FlagSet
	env  LookupEnv
	errs []error
}

func newFlagSet(name string, env LookupEnv, usageOut io.Writer) *FlagSet {
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

// DurationVar registers a duration flag (Go syntax: 90s, 5m, 2h30m) with default def.
func (f *FlagSet) DurationVar(p *time.Duration, name, envName string, def time.Duration, usage string) {
	*p = def
	f.Var((*durationValue)(p), name, envName, usage)
}

// parse parses args after the environment has been applied; flags win over the environment.
func (f *FlagSet) parse(args []string) error {
	if err := f.fs.Parse(args); err != nil {
		return err
	}
	if len(f.errs) > 0 {
		return f.errs[0]
	}
	return nil
}

func (f *FlagSet) args() []string { return f.fs.Args() }

func (f *FlagSet) printDefaults(w io.Writer) {
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
	parsed, err := strconv.ParseBool(strings.TrimSpace(v))
	if err != nil {
		return fmt.Errorf("want true or false")
	}
	*b = boolValue(parsed)
	return nil
}
func (b *boolValue) String() string {
	if b == nil {
		return "false"
	}
	return strconv.FormatBool(bool(*b))
}
func (b *boolValue) IsBoolFlag() bool { return true }

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
