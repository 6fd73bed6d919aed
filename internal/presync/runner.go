package presync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/robfig/cron/v3"

	"github.com/connected-registry/connected-registry/internal/clock"
	"github.com/connected-registry/connected-registry/internal/english"
	"github.com/connected-registry/connected-registry/internal/registryapi"
)

const (
	// DefaultFullCheckAfter: a tag synced longer ago is checked whole (every manifest, and every blob by a request
	// the registry answers from its cache) instead of by its digest alone, so a cache that lost content is mended.
	DefaultFullCheckAfter = 24 * time.Hour
	// DefaultSaveEvery bounds how often a run writes its progress to the status.
	DefaultSaveEvery = 10 * time.Second
	// maxStopMargin is the most a run keeps of its window to end cleanly and write its status.
	maxStopMargin = 10 * time.Second
	// eventRepeat is how long an unchanged problem goes unreported again.
	eventRepeat = time.Hour
	// registryRetry is the pause between two tries to reach the registry.
	registryRetry = 2 * time.Second
)

// Event reasons.
const (
	ReasonFailed      = "SyncFailed"
	ReasonIncomplete  = "SyncIncomplete"
	ReasonWindowEnded = "SyncWindowEnded"
)

// ErrNothingSynced: no selected tag could be synced or found unchanged, and none waits for the next window.
var ErrNothingSynced = errors.New("nothing could be synced")

// notFound is how the status says the parent lacks something.
const notFound = "not found at the parent"

// Runner runs one sync: it fetches every selected manifest and blob through the connected registry, which stores
// what it lacks as it passes, and keeps nothing itself but the status.
type Runner struct {
	// Registry is the connected registry's https:// URL; HTTPClient trusts its CA.
	Registry   *url.URL
	HTTPClient *http.Client
	// Username and Password authenticate to the registry when it requires clients to.
	Username, Password string
	// Repositories are what to hold.
	Repositories []Selection
	// Schedule computes the next run; ScheduleText and WindowText are the settings as given, for the status.
	Schedule     cron.Schedule
	ScheduleText string
	WindowText   string
	// Window bounds the run; 0 runs until done.
	Window time.Duration
	// Concurrency is how many repositories, tags and large blobs are worked on at once (each); as many small
	// blobs (configs, tiny layers) may be fetched beside the large ones.
	Concurrency int
	// Bandwidth caps the bytes per second read, 0 none.
	Bandwidth int64
	// Store keeps the status.
	Store Store
	// FullCheckAfter and SaveEvery default to DefaultFullCheckAfter and DefaultSaveEvery.
	FullCheckAfter, SaveEvery time.Duration
	// RegistryWait is how long a run waits for the registry to answer before it gives up.
	RegistryWait time.Duration
	Clock        clock.Clock
	Log          *slog.Logger
}

// run is the state of one Run.
type run struct {
	*Runner
	reg    *registry
	budget *budget
	// large and small are the run's two lanes of blob fetches, Concurrency slots each. Large blobs take turns
	// on the uplink; a small one (a config, a tiny layer: at most smallBlob bytes) never queues behind them, so
	// the latency-bound work of small tags is done while large layers stream instead of after them, where it
	// would leave the uplink idle at the end of the run.
	large, small chan struct{}
	now          func() time.Time

	mu     sync.Mutex // guards status and everything it points to
	status *Status
}

// Run syncs once. It returns the status it saved, and ErrNothingSynced (wrapped) when nothing could be synced.
// The status says what failed; a window that ends is not a failure.
func (r *Runner) Run(ctx context.Context) (*Status, error) {
	clk := clock.Or(r.Clock)
	now := func() time.Time { return clk.Now().UTC() }
	if r.Concurrency < 1 {
		r.Concurrency = 1
	}
	if r.FullCheckAfter == 0 {
		r.FullCheckAfter = DefaultFullCheckAfter
	}
	if r.SaveEvery == 0 {
		r.SaveEvery = DefaultSaveEvery
	}
	if r.Log == nil {
		r.Log = slog.New(slog.DiscardHandler)
	}
	prev, err := r.Store.Load(ctx)
	if err != nil {
		return nil, err
	}
	started := now()
	rn := &run{Runner: r, now: now, large: make(chan struct{}, r.Concurrency), small: make(chan struct{}, r.Concurrency),
		reg: newRegistry(r.Registry, r.HTTPClient, r.Username, r.Password)}
	st := &Status{Schedule: r.ScheduleText, Window: r.WindowText, Events: prev.Events,
		Run: Run{Started: started, Result: ResultRunning}}
	for _, sel := range r.Repositories {
		rs := &RepositoryStatus{Name: sel.Name, Tags: map[string]TagStatus{}}
		if p := prev.repository(sel.Name); p != nil {
			rs.LastSuccess = p.LastSuccess
			rs.ConsecutiveFailures = p.ConsecutiveFailures
			for k, v := range p.Tags {
				rs.Tags[k] = v
			}
		}
		st.Repositories = append(st.Repositories, rs)
	}
	rn.status = st
	if err := r.Store.Save(ctx, st); err != nil {
		return nil, err
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var stopAt time.Time
	if r.Window > 0 {
		stopAt = started.Add(r.Window - min(r.Window/20, maxStopMargin))
		runCtx, cancel = context.WithDeadline(runCtx, stopAt)
		defer cancel()
	}
	rn.budget = newBudget(r.Bandwidth, stopAt, now)
	r.Log.Info("sync starting", "registry", r.Registry.String(), "repositories", len(r.Repositories), "window", r.WindowText,
		"concurrency", r.Concurrency, "bandwidth", r.Bandwidth)

	saverDone := make(chan struct{})
	stopSaver := make(chan struct{})
	go func() {
		defer close(saverDone)
		t := time.NewTicker(r.SaveEvery)
		defer t.Stop()
		for {
			select {
			case <-stopSaver:
				return
			case <-t.C:
				rn.save(ctx)
			}
		}
	}()

	reachErr := rn.waitRegistry(runCtx)
	if reachErr == nil {
		sem := make(chan struct{}, r.Concurrency)
		var wg sync.WaitGroup
		for i, sel := range r.Repositories {
			rs := st.Repositories[i]
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				rn.syncRepository(runCtx, sel, rs)
			})
		}
		wg.Wait()
	}
	close(stopSaver)
	<-saverDone

	rn.finish(ctx, reachErr)
	// The run's context may be over (the pod is stopping): the status is written anyway.
	saveCtx, saveCancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer saveCancel()
	rn.event(saveCtx)
	rn.mu.Lock()
	final := rn.status
	err = r.Store.Save(saveCtx, final)
	rn.mu.Unlock()
	if err != nil {
		return final, err
	}
	if final.Run.Result == ResultFailed {
		return final, fmt.Errorf("%w: %s", ErrNothingSynced, final.Run.Message)
	}
	return final, nil
}

func (rn *run) save(ctx context.Context) {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	if err := rn.Store.Save(ctx, rn.status); err != nil {
		rn.Log.Warn("writing the sync status", "err", err)
	}
}

// finish sets the run's result and message, and the next run.
func (rn *run) finish(ctx context.Context, reachErr error) {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	st := rn.status
	finished := rn.now()
	st.Run.Finished = &finished
	if rn.Schedule != nil {
		next := rn.Schedule.Next(finished)
		st.NextRun = &next
	}
	r := &st.Run
	problems := st.problems()
	windowEnded := r.TagsPending > 0
	stopped := ctx.Err() != nil
	for _, rs := range st.Repositories {
		rs.countRun(r.Started, reachErr != nil && !stopped)
	}
	switch {
	case reachErr != nil:
		r.Result = ResultFailed
		r.Message = fmt.Sprintf("the registry %s could not be asked: %v", rn.Registry, reachErr)
		if stopped {
			r.Result, r.Message = ResultStopped, "stopped before it could ask the registry"
		}
		return
	case stopped:
		r.Result = ResultStopped
	case r.TagsSynced+r.TagsUnchanged == 0 && !windowEnded && len(problems) > 0:
		r.Result = ResultFailed
	case windowEnded:
		r.Result = ResultWindowEnded
	case len(problems) > 0:
		r.Result = ResultIncomplete
	default:
		r.Result = ResultComplete
	}
	msg := fmt.Sprintf("%s synced (%s fetched), %d unchanged", tagCount(r.TagsSynced), Bytes(r.BytesFetched), r.TagsUnchanged)
	if r.TagsFailed > 0 {
		msg += fmt.Sprintf(", %d failed", r.TagsFailed)
	}
	if r.TagsPending > 0 {
		verb := "left for the next run: the window ended"
		if stopped {
			verb = "left for the next run: the run was stopped"
		}
		msg += fmt.Sprintf(", %d %s", r.TagsPending, verb)
	}
	if len(problems) > 0 {
		msg += "; " + strings.Join(problems, "; ")
	}
	r.Message = msg
}

// problem says in a phrase what went wrong with the repository, or "".
func (rs *RepositoryStatus) problem() string {
	var parts []string
	if rs.Error != "" {
		parts = append(parts, rs.Error)
	}
	if len(rs.Failed) > 0 {
		var tags []string
		for _, t := range sortedKeys(rs.Failed) {
			tags = append(tags, t+" ("+rs.Failed[t]+")")
		}
		parts = append(parts, "tag "+english.List(tags))
	}
	if len(parts) == 0 {
		return ""
	}
	return rs.Name + ": " + strings.Join(parts, ", ")
}

// event records the run's Events: a Warning when repositories or tags failed (SyncFailed, SyncIncomplete), and
// SyncWindowEnded when the window left tags for the next run; each unless the same was recorded less than
// eventRepeat ago.
func (rn *run) event(ctx context.Context) {
	type event struct {
		warning      bool
		reason, text string
	}
	rn.mu.Lock()
	st := rn.status
	var events []event
	problems := st.problems()
	switch {
	case st.Run.Result == ResultFailed && len(problems) == 0:
		events = append(events, event{true, ReasonFailed, st.Run.Message})
	case st.Run.Result == ResultFailed:
		events = append(events, event{true, ReasonFailed, "nothing could be synced: " + strings.Join(problems, "; ")})
	case len(problems) > 0:
		events = append(events, event{true, ReasonIncomplete, strings.Join(problems, "; ")})
	}
	if st.Run.TagsPending > 0 {
		var pending []string
		for _, rs := range st.Repositories {
			if len(rs.Pending) > 0 {
				pending = append(pending, rs.Name+" ("+strings.Join(rs.Pending, ", ")+")")
			}
		}
		events = append(events, event{false, ReasonWindowEnded, fmt.Sprintf("%d tags left for the next run: %s", st.Run.TagsPending, strings.Join(pending, "; "))})
	}
	now := rn.now()
	var record []event
	for _, e := range events {
		if last, ok := st.Events[e.reason]; ok && last.Message == e.text && now.Sub(last.Time) < eventRepeat {
			continue
		}
		if st.Events == nil {
			st.Events = map[string]EventRecord{}
		}
		st.Events[e.reason] = EventRecord{Reason: e.reason, Message: e.text, Time: now}
		record = append(record, e)
	}
	rn.mu.Unlock()
	for _, e := range record {
		rn.Store.Event(ctx, e.warning, e.reason, e.text)
	}
}

// problems lists what went wrong, a phrase per repository.
func (s *Status) problems() []string {
	var out []string
	for _, rs := range s.Repositories {
		if p := rs.problem(); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// waitRegistry waits until the registry answers its API, at most RegistryWait: a run that starts with the
// release (or while the registry restarts) finds it a moment later.
func (rn *run) waitRegistry(ctx context.Context) error {
	deadline := rn.now().Add(rn.RegistryWait)
	for {
		err := rn.reg.ping(ctx)
		var ae *APIError
		refused := errors.As(err, &ae) && ae.Status == http.StatusUnauthorized || errors.Is(err, registryapi.ErrTokenRefused)
		if err == nil || refused || !rn.now().Before(deadline) {
			return err
		}
		rn.Log.Info("waiting for the registry", "registry", rn.Registry.String(), "err", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(registryRetry):
		}
	}
}

// ping checks that the registry answers its API.
func (r *registry) ping(ctx context.Context) error {
	resp, err := r.do(ctx, "", http.MethodGet, r.base.JoinPath("/v2/").String(), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		err := apiError(resp)
		if resp.StatusCode == http.StatusUnauthorized {
			return fmt.Errorf("%w: the registry requires clients to authenticate (registry.clientAuthSecret or clientTokens): give the sync its credentials (sync.credentialsSecret)", err)
		}
		return err
	}
	return nil
}

// repositoryProblem says why the parent will not serve a repository, from the answer to the probe.
func repositoryProblem(err error) string {
	if errors.Is(err, registryapi.ErrScopeNotGranted) {
		return "the registry's client token (sync.credentialsSecret) may not read it (" + err.Error() + "): add the repository to that token's scope"
	}
	var ae *APIError
	if errors.As(err, &ae) {
		switch {
		case ae.Status == http.StatusNotFound:
			return notFound + " (" + ae.Error() + ")"
		case ae.Status == http.StatusUnauthorized || ae.Status == http.StatusForbidden:
			return "the parent refuses the sync token access to it (" + ae.Error() + "): add the repository to the token's scope map"
		case ae.Status == http.StatusTooManyRequests:
			return "the parent throttles the sync (" + ae.Error() + ")"
		}
		return "the parent could not be asked through the registry (" + ae.Error() + ")"
	}
	return "the registry could not be asked (" + err.Error() + ")"
}

// syncRepository syncs one repository, recording everything in rs.
func (rn *run) syncRepository(ctx context.Context, sel Selection, rs *RepositoryStatus) {
	log := rn.Log.With("repository", sel.Name)
	pending := func(note string) {
		rn.mu.Lock()
		defer rn.mu.Unlock()
		rs.Pending = []string{note}
		rn.status.Run.TagsPending++
	}
	if ctx.Err() != nil {
		pending("every selected tag: the run ended before this repository")
		return
	}
	fail := func(msg string) {
		rn.mu.Lock()
		defer rn.mu.Unlock()
		rs.Error = msg
	}
	if err := rn.reg.probe(ctx, sel.Name); err != nil {
		if ctx.Err() != nil {
			pending("every selected tag: the run ended before this repository")
			return
		}
		msg := repositoryProblem(err)
		log.Warn("repository not synced", "problem", msg)
		fail(msg)
		return
	}
	available, err := rn.reg.tags(ctx, sel.Name)
	if err != nil {
		if ctx.Err() != nil {
			pending("every selected tag: the run ended before this repository")
			return
		}
		var ae *APIError
		if errors.As(err, &ae) {
			fail(repositoryProblem(err)) // NAME_UNKNOWN: the parent has no such repository
		} else {
			fail("listing its tags: " + err.Error())
		}
		return
	}
	selected, missing := sel.Select(available)
	rn.mu.Lock()
	for _, t := range missing {
		if rs.Failed == nil {
			rs.Failed = map[string]string{}
		}
		rs.Failed[t] = notFound
		rn.status.Run.TagsFailed++
	}
	for t := range rs.Tags {
		if !slices.Contains(selected, t) {
			delete(rs.Tags, t) // no longer selected, or gone from the parent: the registry keeps it cached
		}
	}
	rn.mu.Unlock()
	if len(selected) == 0 && len(missing) == 0 {
		fail(fmt.Sprintf("no tag of the parent's %d matches %s", len(available), sel.describe()))
		return
	}
	log.Info("syncing repository", "selected", len(selected), "missing", len(missing))

	shared := &flights{calls: map[digest.Digest]*flight{}}
	sem := make(chan struct{}, rn.Concurrency)
	var wg sync.WaitGroup
	for _, tag := range selected {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			rn.syncTag(ctx, sel, rs, tag, shared, log)
		})
	}
	wg.Wait()
	rn.mu.Lock()
	defer rn.mu.Unlock()
	if rs.Error == "" && len(rs.Failed) == 0 && len(rs.Pending) == 0 {
		t := rn.now()
		rs.LastSuccess = &t
	}
}

// describe names the selection in a message.
func (s Selection) describe() string {
	var parts []string
	if s.TagRegex != "" {
		parts = append(parts, fmt.Sprintf("tagRegex %q", s.TagRegex))
	}
	if s.Semver != "" {
		parts = append(parts, fmt.Sprintf("semver %q", s.Semver))
	}
	if s.Latest > 0 {
		parts = append(parts, fmt.Sprintf("latest %d", s.Latest))
	}
	return strings.Join(parts, " with ")
}

// errWindow: a blob was not started, since it could not end before the window does.
var errWindow = errors.New("the window ends before this blob could be fetched")

// syncTag syncs one tag: its manifest (by tag, which makes the registry ask the parent where the tag points), the
// manifests of the selected platforms, and their blobs.
func (rn *run) syncTag(ctx context.Context, sel Selection, rs *RepositoryStatus, tag string, shared *flights, log *slog.Logger) {
	rn.mu.Lock()
	prev, had := rs.Tags[tag]
	rn.mu.Unlock()
	outcome := func(f func()) {
		rn.mu.Lock()
		defer rn.mu.Unlock()
		f()
	}
	fail := func(reason string) {
		outcome(func() {
			if rs.Failed == nil {
				rs.Failed = map[string]string{}
			}
			rs.Failed[tag] = reason
			rn.status.Run.TagsFailed++
		})
		log.Warn("tag not synced", "tag", tag, "reason", reason)
	}
	pend := func() {
		outcome(func() {
			rs.Pending = append(rs.Pending, tag)
			sort.Strings(rs.Pending)
			rn.status.Run.TagsPending++
		})
	}
	var ifNot digest.Digest
	if had && rn.now().Sub(prev.Checked) < rn.FullCheckAfter {
		ifNot = digest.Digest(prev.Digest)
	}
	top, err := rn.reg.getManifest(ctx, sel.Name, tag, ifNot)
	if err != nil {
		if ctx.Err() != nil {
			pend()
			return
		}
		fail(tagProblem(err))
		return
	}
	if top == nil {
		outcome(func() { rn.status.Run.TagsUnchanged++ })
		log.Debug("tag unchanged", "tag", tag, "digest", prev.Digest)
		return
	}

	// Walk the manifests the selection holds, and gather their blobs.
	size := top.Size
	var blobs []descriptor
	seen := map[string]bool{}
	var walk func(m *manifest) error
	walk = func(m *manifest) error {
		if !m.isIndex() {
			for _, d := range append([]descriptor{*m.Config}, m.Layers...) {
				if len(d.URLs) > 0 || d.MediaType == mediaDockerForeign || seen[d.Digest] {
					continue // a foreign layer is not the registry's to serve
				}
				seen[d.Digest] = true
				blobs = append(blobs, d)
				size += d.Size
			}
			return nil
		}
		var have []string
		picked := 0
		for _, d := range m.Manifests {
			nested := d.MediaType == mediaOCIIndex || d.MediaType == mediaDockerList
			if d.Platform != nil {
				have = append(have, d.Platform.String())
			}
			if !nested && !sel.wantsPlatform(d.Platform) {
				continue
			}
			picked++
			child, err := rn.reg.getManifest(ctx, sel.Name, d.Digest, "")
			if err != nil {
				return fmt.Errorf("manifest %s: %w", d.Digest, err)
			}
			size += child.Size
			if err := walk(child); err != nil {
				return err
			}
		}
		if picked == 0 && !sel.allPlatforms() {
			return fmt.Errorf("its index has none of the platforms %s (it has %s)", english.List(sel.Platforms), english.List(uniq(have)))
		}
		return nil
	}
	if err := walk(top); err != nil {
		if ctx.Err() != nil {
			pend()
			return
		}
		fail(tagProblem(err))
		return
	}

	// Fetch the blobs, a few at a time across the run.
	var wg sync.WaitGroup
	errs := make([]error, len(blobs))
	fetched := make([]bool, len(blobs))
	for i, d := range blobs {
		wg.Go(func() {
			fetched[i], errs[i] = shared.do(digest.Digest(d.Digest), func() (bool, error) { return rn.fetch(ctx, sel.Name, d, rs) })
		})
	}
	wg.Wait()
	anyFetched := slices.Contains(fetched, true)
	for _, err := range errs {
		switch {
		case err == nil:
		case errors.Is(err, errWindow) || ctx.Err() != nil:
			pend()
			return
		default:
			fail(tagProblem(err))
			return
		}
	}
	now := rn.now()
	outcome(func() {
		ts := TagStatus{Digest: top.Digest.String(), Size: size, Synced: now, Checked: now}
		if had && prev.Digest == ts.Digest {
			ts.Synced = prev.Synced
		}
		rs.Tags[tag] = ts
		if had && prev.Digest == ts.Digest && !anyFetched {
			rn.status.Run.TagsUnchanged++
		} else {
			rn.status.Run.TagsSynced++
		}
	})
	log.Info("tag synced", "tag", tag, "digest", top.Digest, "blobs", len(blobs), "size", size)
}

// tagProblem says why a tag could not be synced.
func tagProblem(err error) string {
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
		return notFound + " (" + err.Error() + ")"
	}
	if errors.As(err, &ae) && (ae.Status == http.StatusUnauthorized || ae.Status == http.StatusForbidden) {
		return "the parent refuses the sync token (" + err.Error() + ")"
	}
	return err.Error()
}

// fetch makes the registry hold one blob; it reports whether the registry fetched it from the parent.
func (rn *run) fetch(ctx context.Context, repo string, d descriptor, rs *RepositoryStatus) (bool, error) {
	dg, err := digest.Parse(d.Digest)
	if err != nil {
		return false, fmt.Errorf("blob %q: %w", d.Digest, err)
	}
	lane := rn.large
	if d.Size <= smallBlob {
		lane = rn.small
	}
	select {
	case lane <- struct{}{}:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	defer func() { <-lane }()
	if !rn.budget.admit(d.Size) {
		return false, errWindow
	}
	var got int64
	res, n, err := rn.reg.fetchBlob(ctx, repo, dg, d.Size, func(body io.Reader) io.Reader { return rn.budget.reader(ctx, body, &got) })
	rn.budget.done(d.Size, got)
	if err != nil {
		return false, err
	}
	rn.mu.Lock()
	defer rn.mu.Unlock()
	if res == blobCached {
		rn.status.Run.BlobsCached++
		return false, nil
	}
	rn.status.Run.BlobsFetched++
	rn.status.Run.BytesFetched += n
	rs.BytesFetched += n
	rn.Log.Debug("blob fetched", "repository", repo, "digest", d.Digest, "bytes", n)
	return true, nil
}

// smallBlob is the size up to which a blob takes the small lane of fetches.
const smallBlob = 1 << 20

// flights lets tags of a repository that share a blob share its fetch.
type flights struct {
	mu    sync.Mutex
	calls map[digest.Digest]*flight
}

type flight struct {
	done    chan struct{}
	fetched bool
	err     error
}

func (f *flights) do(d digest.Digest, fn func() (bool, error)) (bool, error) {
	f.mu.Lock()
	if c, ok := f.calls[d]; ok {
		f.mu.Unlock()
		<-c.done
		return false, c.err
	}
	c := &flight{done: make(chan struct{})}
	f.calls[d] = c
	f.mu.Unlock()
	c.fetched, c.err = fn()
	close(c.done)
	return c.fetched, c.err
}

func uniq(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return slices.Compact(out)
}

// tagCount says "1 tag" or "n tags".
func tagCount(n int) string {
	if n == 1 {
		return "1 tag"
	}
	return fmt.Sprintf("%d tags", n)
}
