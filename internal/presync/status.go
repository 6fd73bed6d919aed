package presync

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Results of a run (Run.Result).
const (
	// ResultRunning: the run has not finished (or its pod was killed before it could say).
	ResultRunning = "running"
	// ResultComplete: every selected tag of every repository is synced.
	ResultComplete = "complete"
	// ResultIncomplete: some repositories or tags failed (Repository.Error, Repository.Failed); the others are
	// synced.
	ResultIncomplete = "incomplete"
	// ResultWindowEnded: the window ended first; Repository.Pending lists what the next run does.
	ResultWindowEnded = "window-ended"
	// ResultFailed: nothing could be synced.
	ResultFailed = "failed"
	// ResultStopped: the run was stopped (its pod deleted) before it ended.
	ResultStopped = "stopped"
)

// Status is what the sync runner reports and keeps between runs: the status ConfigMap's status.json, the source
// of its summary and of the Events, and of the metrics to come. Times are UTC.
type Status struct {
	// Schedule and Window are the run's settings, as given (cron, ISO-8601).
	Schedule string `json:"schedule"`
	Window   string `json:"window,omitempty"`
	// Run is the latest run.
	Run Run `json:"run"`
	// NextRun is when the schedule starts the next run.
	NextRun *time.Time `json:"nextRun,omitempty"`
	// Repositories are those of the latest run, in the order of sync.repositories.
	Repositories []*RepositoryStatus `json:"repositories"`
	// Events are the latest Event recorded of each reason, so that an unchanged problem is not reported every run.
	Events map[string]EventRecord `json:"events,omitempty"`
}

// Run is one run of the sync.
type Run struct {
	Started  time.Time  `json:"started"`
	Finished *time.Time `json:"finished,omitempty"`
	// Result is one of the Result constants; Message says it in a sentence.
	Result  string `json:"result"`
	Message string `json:"message,omitempty"`
	// TagsSynced were fetched (new, or moved at the parent); TagsUnchanged still name the digest synced before;
	// TagsFailed and TagsPending were not synced.
	TagsSynced    int `json:"tagsSynced"`
	TagsUnchanged int `json:"tagsUnchanged"`
	TagsFailed    int `json:"tagsFailed"`
	TagsPending   int `json:"tagsPending"`
	// BlobsFetched the registry lacked and fetched from the parent, BytesFetched bytes; BlobsCached it held.
	BlobsFetched int   `json:"blobsFetched"`
	BlobsCached  int   `json:"blobsCached"`
	BytesFetched int64 `json:"bytesFetched"`
}

// RepositoryStatus is one repository of sync.repositories.
type RepositoryStatus struct {
	Name string `json:"name"`
	// LastSuccess is when a run last synced every tag selected in it, nil if none has.
	LastSuccess *time.Time `json:"lastSuccess,omitempty"`
	// Error says why the latest run could not sync the repository at all.
	Error string `json:"error,omitempty"`
	// Tags are the selected tags synced completely, by tag: their digest stays served with the parent down.
	Tags map[string]TagStatus `json:"tags,omitempty"`
	// Failed are the selected tags the latest run could not sync, with the reason.
	Failed map[string]string `json:"failed,omitempty"`
	// Pending are the selected tags the window ended before.
	Pending []string `json:"pending,omitempty"`
	// BytesFetched is what the latest run fetched from the parent for this repository.
	BytesFetched int64 `json:"bytesFetched"`
	// ConsecutiveFailures counts the runs in a row that failed the repository (an Error, a failed tag, or the
	// registry out of reach); a run that synced it whole sets it to 0, and one the window or a stop cut short
	// leaves it.
	ConsecutiveFailures int `json:"consecutiveFailures,omitempty"`
}

// countRun updates ConsecutiveFailures once the run that started at started has ended; unreachable: that run
// could not ask the registry at all.
func (r *RepositoryStatus) countRun(started time.Time, unreachable bool) {
	switch {
	case unreachable || r.Error != "" || len(r.Failed) > 0:
		r.ConsecutiveFailures++
	case r.LastSuccess != nil && !r.LastSuccess.Before(started):
		r.ConsecutiveFailures = 0
	}
}

// TagStatus is a tag synced completely.
type TagStatus struct {
	Digest string `json:"digest"`
	// Size is the bytes of the tag's manifests and blobs of the selected platforms.
	Size int64 `json:"size"`
	// Synced is when this digest was synced; Checked when every part of it was last found in the registry.
	Synced  time.Time `json:"synced"`
	Checked time.Time `json:"checked"`
}

// EventRecord is an Event the runner recorded.
type EventRecord struct {
	Reason  string    `json:"reason"`
	Message string    `json:"message"`
	Time    time.Time `json:"time"`
}

// repository returns the status of name, nil if the status has none.
func (s *Status) repository(name string) *RepositoryStatus {
	for _, r := range s.Repositories {
		if r.Name == name {
			return r
		}
	}
	return nil
}

// Size sums the sizes of the repository's synced tags (a blob shared by two tags counts twice).
func (r *RepositoryStatus) Size() int64 {
	var n int64
	for _, t := range r.Tags {
		n += t.Size
	}
	return n
}

// JSON is the status as status.json holds it.
func (s *Status) JSON() ([]byte, error) { return json.MarshalIndent(s, "", "  ") }

// ParseStatus reads status.json; empty data is an empty status.
func ParseStatus(data []byte) (*Status, error) {
	s := &Status{}
	if len(strings.TrimSpace(string(data))) == 0 {
		return s, nil
	}
	if err := json.Unmarshal(data, s); err != nil {
		return nil, fmt.Errorf("reading the sync status: %w", err)
	}
	return s, nil
}

// Summary is the status for people: the latest run, the next, and a line per repository.
func (s *Status) Summary() string {
	var b strings.Builder
	window := "no window"
	if s.Window != "" {
		window = "window " + s.Window
	}
	fmt.Fprintf(&b, "Schedule:  %q (UTC), %s\n", s.Schedule, window)
	r := s.Run
	fmt.Fprintf(&b, "Last run:  %s", stamp(r.Started))
	if r.Finished != nil {
		fmt.Fprintf(&b, " to %s", stamp(*r.Finished))
	}
	fmt.Fprintf(&b, ", %s", r.Result)
	if r.Message != "" {
		fmt.Fprintf(&b, ": %s", r.Message)
	}
	b.WriteString("\n")
	if s.NextRun != nil {
		fmt.Fprintf(&b, "Next run:  %s\n", stamp(*s.NextRun))
	}
	b.WriteString("\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "REPOSITORY\tTAGS\tSIZE\tLAST SUCCESS\tSTATE")
	for _, repo := range s.Repositories {
		last := "never"
		if repo.LastSuccess != nil {
			last = stamp(*repo.LastSuccess)
		}
		selected := len(repo.Tags) + len(repo.Failed) + len(repo.Pending)
		tags := fmt.Sprintf("%d", len(repo.Tags))
		if selected != len(repo.Tags) {
			tags = fmt.Sprintf("%d of %d", len(repo.Tags), selected)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", repo.Name, tags, Bytes(repo.Size()), last, repo.state())
	}
	tw.Flush()
	return b.String()
}

// state is the STATE column of the summary.
func (r *RepositoryStatus) state() string {
	var parts []string
	if r.Error != "" {
		parts = append(parts, r.Error)
	}
	if len(r.Failed) > 0 {
		var tags []string
		for _, t := range sortedKeys(r.Failed) {
			tags = append(tags, fmt.Sprintf("%s (%s)", t, r.Failed[t]))
		}
		parts = append(parts, fmt.Sprintf("%d failed: %s", len(r.Failed), strings.Join(tags, ", ")))
	}
	if len(r.Pending) > 0 {
		parts = append(parts, fmt.Sprintf("%d pending: %s", len(r.Pending), strings.Join(r.Pending, ", ")))
	}
	if len(parts) == 0 {
		return "ok"
	}
	return strings.Join(parts, "; ")
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// Bytes prints a byte count for people: 0 B, 13.2 kB, 1.1 GB.
func Bytes(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTPE"[exp])
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
