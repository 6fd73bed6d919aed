package presync

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/Masterminds/semver/v3"
	"github.com/robfig/cron/v3"
	"k8s.io/apimachinery/pkg/api/resource"
)

// The values of a sync are checked twice, with the same messages: by the chart when it renders
// (templates/sync/_sync.tpl) and by this package when the binary starts, since its flags may be given by hand.
// Each message starts with the key it is about, which the caller names: the chart's "sync.schedule", the binary's
// "--schedule". testdata/validation.json holds the cases both are tested against.

// maxWindow is the longest sync window: a year, beyond which an empty window (no limit) is what is meant.
const maxWindow = 365 * 24 * time.Hour

// ErrInvalid marks a value that the checks of this file refuse.
var ErrInvalid = errors.New("invalid sync setting")

func invalid(format string, args ...any) error {
	return &invalidError{msg: fmt.Sprintf(format, args...)}
}

type invalidError struct{ msg string }

func (e *invalidError) Error() string { return e.msg }
func (e *invalidError) Is(target error) bool {
	return target == ErrInvalid
}

// cronField is one field of a five-field cron schedule, as robfig/cron/v3 (the parser of Kubernetes' CronJob
// controller) reads it.
type cronField struct {
	name     string
	min, max int
	names    map[string]int
}

var cronFields = []cronField{
	{name: "minute", min: 0, max: 59},
	{name: "hour", min: 0, max: 23},
	{name: "day-of-month", min: 1, max: 31},
	{name: "month", min: 1, max: 12, names: map[string]int{"jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6,
		"jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12}},
	{name: "day-of-week", min: 0, max: 6, names: map[string]int{"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}},
}

// cronDescriptors are the @ shorthands of robfig/cron's standard parser that the chart accepts (not @every).
var cronDescriptors = []string{"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}

var cronPart = regexp.MustCompile(`^(\*|\?|([0-9]{1,4}|[A-Za-z]{3})(-([0-9]{1,4}|[A-Za-z]{3}))?)(/([0-9]{1,4}))?$`)

const cronExample = `for example "0 2 * * *" (every day at 02:00 UTC) or "* * * * *" (every minute)`

// ParseSchedule checks a cron schedule (five fields, UTC, or an @ shorthand such as @daily) and parses it. key
// names the value in the message.
func ParseSchedule(key, s string) (cron.Schedule, error) {
	if reason := scheduleProblem(s); reason != "" {
		return nil, invalid("%s %q is not a cron schedule: %s; %s", key, s, reason, cronExample)
	}
	sched, err := cron.ParseStandard(strings.TrimSpace(s))
	if err != nil {
		// The checks above refuse what robfig/cron refuses; this is a backstop.
		return nil, invalid("%s %q is not a cron schedule: %v; %s", key, s, err, cronExample)
	}
	return sched, nil
}

func scheduleProblem(s string) string {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return "it is empty"
	case strings.HasPrefix(s, "TZ=") || strings.HasPrefix(s, "CRON_TZ="):
		return "it sets a time zone, but schedules run in UTC"
	case strings.HasPrefix(s, "@"):
		for _, d := range cronDescriptors {
			if s == d {
				return ""
			}
		}
		return "of the @ shorthands only " + strings.Join(cronDescriptors[:len(cronDescriptors)-1], ", ") + " and " +
			cronDescriptors[len(cronDescriptors)-1] + " are accepted"
	}
	fields := strings.Fields(s)
	if len(fields) != len(cronFields) {
		return fmt.Sprintf("it has %d fields, not 5 (minute, hour, day-of-month, month, day-of-week)", len(fields))
	}
	for i, f := range fields {
		if reason := cronFields[i].problem(f); reason != "" {
			return reason
		}
	}
	return ""
}

func (cf cronField) problem(field string) string {
	for _, part := range strings.Split(field, ",") {
		m := cronPart.FindStringSubmatch(part)
		if m == nil {
			return fmt.Sprintf("the %s field %q is not *, a number, a range such as 1-5, a step such as */15, or a list of them", cf.name, field)
		}
		if m[1] != "*" && m[1] != "?" {
			start, ok := cf.value(m[2])
			end := start
			if ok && m[4] != "" {
				end, ok = cf.value(m[4])
			}
			if !ok {
				return fmt.Sprintf("the %s field %q is not *, a number, a range such as 1-5, a step such as */15, or a list of them", cf.name, field)
			}
			for _, v := range []int{start, end} {
				if v < cf.min || v > cf.max {
					return fmt.Sprintf("the %s field %q has %d, outside %d-%d", cf.name, field, v, cf.min, cf.max)
				}
			}
			if start > end {
				return fmt.Sprintf("the %s field %q has a range that ends before it starts", cf.name, field)
			}
		}
		if m[6] != "" {
			if step, _ := strconv.Atoi(m[6]); step == 0 {
				return fmt.Sprintf("the %s field %q has a step of 0", cf.name, field)
			}
		}
	}
	return ""
}

// value reads a number or, in the month and day-of-week fields, a three-letter name.
func (cf cronField) value(s string) (int, bool) {
	if n, err := strconv.Atoi(s); err == nil {
		return n, true
	}
	n, ok := cf.names[strings.ToLower(s)]
	return n, ok
}

var (
	windowShape   = regexp.MustCompile(`^P(?:([0-9]{1,6})W)?(?:([0-9]{1,6})D)?(?:T(?:([0-9]{1,6})H)?(?:([0-9]{1,6})M)?(?:([0-9]{1,6})S)?)?$`)
	windowYearMon = regexp.MustCompile(`^P[^T]*[YM]`)
)

const windowExample = "for example PT3H (3 hours), P1D (1 day) or PT30M (30 minutes), or empty for no limit"

// ParseWindow reads an ISO-8601 duration of whole weeks, days, hours, minutes and seconds, such as PT3H or P1DT12H,
// as ACR's --sync-window takes it. Empty is no limit (0). key names the value in the message.
func ParseWindow(key, s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	fail := func(reason string) (time.Duration, error) {
		return 0, invalid("%s %q is not an ISO-8601 duration: %s; %s", key, s, reason, windowExample)
	}
	if windowYearMon.MatchString(s) {
		return fail("years and months have no fixed length: give weeks (W) or days (D)")
	}
	m := windowShape.FindStringSubmatch(s)
	if m == nil || s == "P" || strings.HasSuffix(s, "T") {
		return fail("write P, then weeks (W) and days (D), then T and hours (H), minutes (M) and seconds (S), each a whole number")
	}
	var d time.Duration
	for i, unit := range []time.Duration{7 * 24 * time.Hour, 24 * time.Hour, time.Hour, time.Minute, time.Second} {
		n, _ := strconv.Atoi(m[i+1]) // at most 6 digits: no overflow
		d += time.Duration(n) * unit
	}
	switch {
	case d == 0:
		return fail("it is zero")
	case d > maxWindow:
		return fail("it is longer than a year (P365D)")
	}
	return d, nil
}

var bandwidthShape = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|k|M|G)?$`)

// ParseBandwidth reads a rate in bytes per second as a Kubernetes quantity (20Mi, 12.5M). Empty is no cap (0).
func ParseBandwidth(key, s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	reason := ""
	var q resource.Quantity
	var err error
	if !bandwidthShape.MatchString(s) {
		reason = "give a quantity such as 20Mi (20 MiB/s) or 12.5M (a 100 Mbit/s link)"
	} else if q, err = resource.ParseQuantity(s); err != nil || q.Value() <= 0 {
		reason = "it is zero"
	}
	if reason != "" {
		return 0, invalid("%s %q is not a rate in bytes per second: %s, or leave it empty for no cap", key, s, reason)
	}
	return q.Value(), nil
}

// repositoryName is the distribution-spec's repository name grammar.
var repositoryName = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$`)

// maxRepositoryName is Distribution's limit on a repository name.
const maxRepositoryName = 255

func nameProblem(s string) string {
	switch {
	case s == "":
		return "it is empty"
	case strings.ContainsAny(s, ":@"):
		return "it holds a tag or a digest: give the repository's name only, and its tags in tags"
	case len(s) > maxRepositoryName:
		return "it is longer than 255 characters"
	case !repositoryName.MatchString(s):
		return `use lowercase letters and digits, separated by ".", "_", "__" or dashes, and "/" between path components`
	}
	return ""
}

var (
	tagName      = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)
	platformName = regexp.MustCompile(`^[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?$`)
)

// Repository is one item of sync.repositories: a repository of the parent and the tags and platforms to hold.
type Repository struct {
	// Name is the repository as the parent names it, without its host: "hello-world", "library/nginx".
	Name string `json:"name"`
	// Tags lists tags exactly.
	Tags []string `json:"tags,omitempty"`
	// TagRegex selects the tags it matches (Go RE2, not anchored unless written with ^ and $).
	TagRegex string `json:"tagRegex,omitempty"`
	// Semver selects the tags that are semantic versions within this range (Masterminds/semver v3 syntax).
	Semver string `json:"semver,omitempty"`
	// Latest keeps the Latest highest semantic versions: of every tag alone, or of those TagRegex or Semver select.
	Latest int `json:"latest,omitempty"`
	// Platforms of an index to hold, os/architecture[/variant]; empty holds every platform.
	Platforms []string `json:"platforms,omitempty"`
}

// ParseRepositories reads the JSON list of sync.repositories and checks every item as the chart does. key
// names the list in messages: "sync.repositories", "--repositories".
func ParseRepositories(key, s string) ([]Selection, error) {
	var repos []Repository
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&repos); err != nil {
		return nil, invalid("%s is not a JSON list of repositories: %v; for example [{\"name\":\"hello-world\",\"tags\":[\"latest\"]}]", key, err)
	}
	if len(repos) == 0 {
		return nil, invalid(`%s is empty: list the repositories the site must hold, for example [{"name":"hello-world","tags":["latest"]}]`, key)
	}
	return CheckRepositories(key, repos)
}

// CheckRepositories checks every item of sync.repositories and compiles its selection.
func CheckRepositories(key string, repos []Repository) ([]Selection, error) {
	seen := map[string]string{}
	var out []Selection
	for i, r := range repos {
		item := fmt.Sprintf("%s[%d]", key, i)
		sel, err := r.compile(item)
		if err != nil {
			return nil, err
		}
		if first, dup := seen[r.Name]; dup {
			return nil, invalid("%s names %q again, as %s does: give each repository once", item, r.Name, first)
		}
		seen[r.Name] = item
		out = append(out, sel)
	}
	return out, nil
}

const (
	regexExample  = `for example ^v1\.[0-9]+$ (v1.0, v1.1, …) or ^[0-9]+\.[0-9]+\.[0-9]+$`
	semverExample = `for example ">=1.25 <1.27", "~1.25" (1.25.x) or "^2" (2.x)`
)

// compile checks one repository and compiles its selection; item names it ("sync.repositories[0]").
func (r Repository) compile(item string) (Selection, error) {
	if reason := nameProblem(r.Name); reason != "" {
		return Selection{}, invalid(`%s.name %q is not a repository name: %s; for example "hello-world" or "library/nginx", as the parent names it, without the parent's host`, item, r.Name, reason)
	}
	var given []string
	for _, g := range []struct {
		name string
		set  bool
	}{{"tags", len(r.Tags) > 0}, {"tagRegex", r.TagRegex != ""}, {"semver", r.Semver != ""}} {
		if g.set {
			given = append(given, g.name)
		}
	}
	switch {
	case len(given) == 0 && r.Latest == 0:
		return Selection{}, invalid(`%s (%q) selects no tags: give tags (a list), tagRegex, semver or latest; for example tags: ["latest"]`, item, r.Name)
	case len(given) > 1:
		return Selection{}, invalid("%s (%q) has both %s and %s: give one of tags, tagRegex and semver (latest may narrow tagRegex or semver)", item, r.Name, given[0], given[1])
	case len(r.Tags) > 0 && r.Latest != 0:
		return Selection{}, invalid("%s (%q) has both tags and latest: latest narrows tagRegex or semver to the highest versions, not a list of tags", item, r.Name)
	case r.Latest < 0:
		return Selection{}, invalid("%s.latest %d is not a count of tags: give 1 or more", item, r.Latest)
	}
	sel := Selection{Repository: r}
	for j, t := range r.Tags {
		if !tagName.MatchString(t) {
			return Selection{}, invalid(`%s.tags[%d] %q is not a tag: use up to 128 letters, digits, ".", "_" and "-", not starting with "." or "-"; for example "1.25" or "latest"`, item, j, t)
		}
	}
	if r.TagRegex != "" {
		re, err := regexp.Compile(r.TagRegex)
		if err != nil {
			return Selection{}, invalid("%s.tagRegex %q is not a regular expression in Go's RE2 syntax; %s (%v)", item, r.TagRegex, regexExample, err)
		}
		sel.regex = re
	}
	if r.Semver != "" {
		c, err := semver.NewConstraint(r.Semver)
		if err != nil {
			return Selection{}, invalid("%s.semver %q is not a semver range in Masterminds/semver v3 syntax; %s", item, r.Semver, semverExample)
		}
		sel.semver = c
	}
	for j, p := range r.Platforms {
		if !platformName.MatchString(p) {
			return Selection{}, invalid("%s.platforms[%d] %q is not a platform: give os/architecture or os/architecture/variant; for example linux/amd64 or linux/arm/v7", item, j, p)
		}
		os, rest, _ := strings.Cut(p, "/")
		arch, variant, _ := strings.Cut(rest, "/")
		sel.platforms = append(sel.platforms, Platform{OS: os, Architecture: arch, Variant: variant})
	}
	return sel, nil
}
