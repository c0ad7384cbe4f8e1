package proptest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/goflame/goflame/flame"
	"github.com/goflame/goflame/proptest/model"
)

// The durations of the lockstep test. Steps happen on a 2 ms grid. An
// execution limit starts from the pool's coarse clock and may end up to
// clockSlack early, so every limit ends 1 ms (plus an odd few µs) off the
// grid, and its window never holds a step; every other period has its own
// odd microsecond part in the other half of the 2 ms, so that timers of
// different kinds, started by different steps, rarely come due together.
// The model spots the remaining clashes and the step is drawn again.
const (
	tick          = 2 * time.Millisecond // virtual time between two steps
	clockSlack    = time.Millisecond     // flame/internal/clock.Resolution
	execTimeout   = 4*time.Second + 1013*time.Microsecond
	shortTimeoutA = 700*time.Millisecond + 1071*time.Microsecond
	shortTimeoutB = 1500*time.Millisecond + 1089*time.Microsecond
	bootTimeout   = 3*time.Second + 1229*time.Microsecond
	idlePeriod    = 5*time.Second + 1541*time.Microsecond
	minIdlePeriod = 7*time.Second + 1653*time.Microsecond
	closeShort    = 2*time.Second + 1397*time.Microsecond
	closeLong     = 20*time.Second + 1801*time.Microsecond

	// growStartDelay is how long the test's OnGrowStart takes. BootTimeout
	// starts after it, so that a boot that hangs does not end at the very
	// instant as the checkout wait of the caller it was started for (by
	// default both last BootTimeout).
	growStartDelay = 523 * time.Microsecond
)

var errBootFailed = errors.New("proptest: boot failed")

// backend is a flame.Backend whose boots the test drives: Boot blocks until
// the test completes or fails it (or its ctx ends: BootTimeout, or the pool
// no longer wants it). In auto mode (NewPool's Min boots) it succeeds at once.
type backend struct {
	mu    sync.Mutex
	auto  bool
	dead  bool                  // teardown: every boot fails at once
	boots map[uint64]chan error // boots blocked in Boot, by runner ID
	nodes map[uint64]*node      // every node returned, by runner ID
}

func newBackend() *backend {
	return &backend{boots: map[uint64]chan error{}, nodes: map[uint64]*node{}}
}

func (b *backend) Boot(ctx context.Context, spec flame.RunnerSpec) (flame.Node, error) {
	b.mu.Lock()
	if b.dead {
		b.mu.Unlock()
		return nil, errBootFailed
	}
	if b.auto {
		defer b.mu.Unlock()
		return b.newNodeLocked(spec.ID), nil
	}
	ch := make(chan error, 1)
	b.boots[spec.ID] = ch
	b.mu.Unlock()
	var err error
	select {
	case err = <-ch:
	case <-ctx.Done():
		err = ctx.Err()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.boots, spec.ID)
	if err != nil {
		return nil, err
	}
	return b.newNodeLocked(spec.ID), nil
}

func (b *backend) newNodeLocked(id uint64) *node {
	n := &node{id: id, done: make(chan struct{})}
	b.nodes[id] = n
	return n
}

// resolve ends boot id: with a node when err is nil, else with err.
func (b *backend) resolve(id uint64, err error) {
	b.mu.Lock()
	ch := b.boots[id]
	b.mu.Unlock()
	if ch == nil {
		panic(fmt.Sprintf("proptest: boot %d is not blocked in Backend.Boot", id))
	}
	ch <- err
}

// blocked returns the IDs of the boots blocked in Boot.
func (b *backend) blocked() []uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Sorted(maps.Keys(b.boots))
}

// alive returns the IDs of the nodes that have not stopped.
func (b *backend) alive() []uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	var ids []uint64
	for id, n := range b.nodes {
		select {
		case <-n.done:
		default:
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

func (b *backend) node(id uint64) *node {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.nodes[id]
}

// kill fails every blocked boot and every later one (teardown).
func (b *backend) kill() {
	b.mu.Lock()
	b.dead = true
	chs := slices.Collect(maps.Values(b.boots))
	b.mu.Unlock()
	for _, ch := range chs {
		select {
		case ch <- errBootFailed:
		default:
		}
	}
}

// node is a runner: fn runs on the caller's goroutine; crash stops it
// unasked.
type node struct {
	id   uint64
	once sync.Once
	done chan struct{}
}

func (n *node) Exec(ctx context.Context, fn func(context.Context) error) error { return fn(ctx) }
func (n *node) Shutdown(context.Context) error                                 { n.stop(); return nil }
func (n *node) Done() <-chan struct{}                                          { return n.done }
func (n *node) stop()                                                          { n.once.Do(func() { close(n.done) }) }

// eventLog records the pool's hooks in call order.
type eventLog struct {
	mu     sync.Mutex
	events []model.Event
}

func (l *eventLog) add(e model.Event) {
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
}

func (l *eventLog) get() []model.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events)
}

// install sets the hooks of cfg to record into l. OnGrowStart then takes
// growStartDelay.
func (l *eventLog) install(cfg *flame.Config) {
	cfg.OnGrowStart = func(ev flame.GrowEvent) {
		l.add(model.Event{Kind: model.GrowStart, RunnerID: ev.RunnerID, Count: ev.Count})
		time.Sleep(growStartDelay)
	}
	cfg.OnGrowEnd = func(ev flame.GrowEvent, err error) {
		detail := model.GrowOK
		switch {
		case errors.Is(err, flame.ErrBootCanceled):
			detail = model.GrowCanceled
		case err != nil:
			detail = model.GrowFailed
		}
		l.add(model.Event{Kind: model.GrowEnd, RunnerID: ev.RunnerID, Count: ev.Count, Detail: detail})
	}
	cfg.OnShrink = func(ev flame.ShrinkEvent) {
		l.add(model.Event{Kind: model.Shrink, RunnerID: ev.RunnerID, Count: ev.Count, Detail: string(reason(ev.Reason))})
	}
}

func reason(err error) model.Reason {
	switch {
	case errors.Is(err, flame.ErrIdleShutdown):
		return model.ReasonIdle
	case errors.Is(err, flame.ErrResized):
		return model.ReasonResized
	case errors.Is(err, flame.ErrSingleUse):
		return model.ReasonSingleUse
	case errors.Is(err, flame.ErrRunnerDown):
		return model.ReasonDown
	case errors.Is(err, flame.ErrClosed):
		return model.ReasonClosed
	default:
		return model.Reason(fmt.Sprintf("unexpected reason %v", err))
	}
}

// classify maps an error to the model's outcomes.
func classify(err error) model.Outcome {
	switch {
	case err == nil:
		return model.OK
	case errors.Is(err, flame.ErrCheckoutTimeout):
		return model.CheckoutTimeout
	case errors.Is(err, flame.ErrTimeout):
		return model.Timeout
	case errors.Is(err, flame.ErrRunnerDown):
		return model.RunnerDown
	case errors.Is(err, flame.ErrClosed):
		return model.Closed
	case errors.Is(err, flame.ErrInvalidConfig):
		return model.Invalid
	case errors.Is(err, flame.ErrIdleShutdown), errors.Is(err, flame.ErrResized),
		errors.Is(err, flame.ErrSingleUse), errors.Is(err, flame.ErrBootCanceled):
		return model.Outcome(fmt.Sprintf("cancelled by the pool shrinking (%v)", err))
	case errors.Is(err, context.Canceled):
		return model.Canceled
	default:
		return model.Outcome(fmt.Sprintf("unexpected error %q", err))
	}
}

// work is one Call, Cast or PlaceChild on the real pool. Its fn records the
// runner it got and then holds its slot until the test releases it or its
// ctx ends.
type work struct {
	id      int
	spec    model.Spec
	cancel  context.CancelFunc
	release chan struct{}
	running chan struct{} // closed when fn starts

	// Guarded by the harness's mu.
	started, exited bool
	runner          uint64
	returned        bool
	result          model.Outcome
	namesBootError  bool
	child           *flame.Child
	childDone       bool
	childErr        model.Outcome
	released        bool
}

// closeCall is one call of Pool.Close on the real pool.
type closeCall struct {
	cancel   context.CancelFunc
	returned bool // guarded by the harness's mu
	result   model.CloseResult
}

// idleScript is how the user's IdleCheck behaves, as the test scripts it:
// its answer, and optionally one Call started from inside the next check
// (user code using the pool while the pool consults it).
type idleScript struct {
	answer    bool
	startCall bool
}

// modelIdleCheck is the scripted IdleCheck on the model's side.
type modelIdleCheck struct{ script idleScript }

func (c *modelIdleCheck) Check(m *model.Model) bool {
	if c.script.startCall {
		c.script.startCall = false
		m.Start(model.Spec{Kind: model.KindCall})
	}
	return c.script.answer
}

func (c *modelIdleCheck) Clone() model.IdleCheck { cc := *c; return &cc }

// ops runs the pool side of the test: it starts work, finishes it and
// records what happens.
type ops struct {
	pool    *flame.Pool
	backend *backend
	events  *eventLog
	running sync.WaitGroup // goroutines the test started

	mu     sync.Mutex
	works  []*work
	closes []*closeCall
	idle   idleScript
}

// start begins spec on the pool, as work number len(works)+1.
func (o *ops) start(spec model.Spec) *work {
	ctx, cancel := context.WithCancel(context.Background())
	w := &work{spec: spec, cancel: cancel, release: make(chan struct{}), running: make(chan struct{})}
	o.mu.Lock()
	o.works = append(o.works, w)
	w.id = len(o.works)
	o.mu.Unlock()

	fn := func(ctx context.Context) error {
		id, _ := flame.RunnerID(ctx)
		o.mu.Lock()
		w.started, w.runner = true, id
		o.mu.Unlock()
		close(w.running)
		defer func() {
			o.mu.Lock()
			w.exited = true
			o.mu.Unlock()
		}()
		select {
		case <-w.release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	var opts []flame.CallOption
	if spec.Timeout != 0 {
		opts = append(opts, flame.WithTimeout(spec.Timeout))
	}
	if spec.Unlinked {
		opts = append(opts, flame.WithLink(false))
	}
	switch spec.Kind {
	case model.KindCall:
		o.running.Go(func() { o.returned(w, o.pool.Call(ctx, fn, opts...)) })
	case model.KindCast:
		o.returned(w, o.pool.Cast(ctx, fn, opts...))
	case model.KindChild:
		o.running.Go(func() {
			c, err := o.pool.PlaceChild(ctx, fn, opts...)
			o.mu.Lock()
			w.child = c
			o.mu.Unlock()
			o.returned(w, err)
			if c == nil {
				return
			}
			<-c.Done()
			o.mu.Lock()
			w.childDone, w.childErr = true, classify(c.Err())
			o.mu.Unlock()
		})
	}
	return w
}

func (o *ops) returned(w *work, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	w.returned, w.result = true, classify(err)
	w.namesBootError = err != nil && strings.Contains(err.Error(), "last boot error")
}

func (o *ops) work(id int) *work {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.works[id-1]
}

// finish makes work id's fn return nil.
func (o *ops) finish(id int) {
	w := o.work(id)
	o.mu.Lock()
	w.released = true
	o.mu.Unlock()
	close(w.release)
}

// stopChild calls Child.Stop, which waits for fn to return.
func (o *ops) stopChild(id int) {
	w := o.work(id)
	o.mu.Lock()
	c := w.child
	o.mu.Unlock()
	o.running.Go(c.Stop)
}

// close starts Pool.Close with a ctx that ends after timeout.
func (o *ops) close(timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	c := &closeCall{cancel: cancel}
	o.mu.Lock()
	o.closes = append(o.closes, c)
	o.mu.Unlock()
	o.running.Go(func() {
		err := o.pool.Close(ctx)
		res := model.CloseOK
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			res = model.CloseDeadline
		case err != nil:
			res = model.CloseResult(fmt.Sprintf("unexpected error %q", err))
		}
		o.mu.Lock()
		c.returned, c.result = true, res
		o.mu.Unlock()
	})
}

// idleCheck is the pool's Config.IdleCheck. A call it starts has its slot
// when it returns (or, if there is none free, is queued: virtual time moves
// on only once every goroutine is blocked). It does not use synctest.Wait:
// that is for the bubble's root goroutine only (from others it has crashed
// the race-enabled runtime).
func (o *ops) idleCheck() bool {
	o.mu.Lock()
	s := o.idle
	o.idle.startCall = false
	o.mu.Unlock()
	if s.startCall {
		w := o.start(model.Spec{Kind: model.KindCall})
		select {
		case <-w.running:
		case <-time.After(time.Nanosecond):
		}
	}
	return s.answer
}

// abandon ends everything the test started, whatever state it is in, so
// that the bubble can end even after a failed check.
func (o *ops) abandon() {
	o.backend.kill()
	o.mu.Lock()
	works := slices.Clone(o.works)
	closes := slices.Clone(o.closes)
	for _, w := range works {
		if !w.released {
			w.released = true
			close(w.release)
		}
	}
	o.mu.Unlock()
	for _, w := range works {
		w.cancel()
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = o.pool.Close(ctx)
	for _, c := range closes {
		c.cancel()
	}
	o.running.Wait()
}

// bubbleGoroutines counts the goroutines of the caller's synctest bubble
// (the process has others, which come and go on their own).
func bubbleGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	headers := regexp.MustCompile(`(?m)^goroutine \d+ \[[^\]]*(synctest bubble \d+)\]:`).FindAllSubmatch(buf, -1)
	if len(headers) == 0 {
		return 0
	}
	mine := string(headers[0][1]) // the dump starts with the caller
	n := 0
	for _, h := range headers {
		if string(h[1]) == mine {
			n++
		}
	}
	return n
}

// snapshot is what the test compares between the pool and the model after
// every step, as lines of text so that a mismatch reads as a diff.
type snapshot []string

func statsLines(st model.Stats) []string {
	loads := make([]string, len(st.RunnerLoads))
	for i, l := range st.RunnerLoads {
		loads[i] = fmt.Sprintf("#%d:%d", l.ID, l.Load)
	}
	return []string{
		fmt.Sprintf("stats: runners=%d pending=%d waiting=%d in-use=%d min=%d max=%d",
			st.Runners, st.Pending, st.Waiting, st.InUse, st.Min, st.Max),
		fmt.Sprintf("stats: booted=%d boot-failures=%d shrunk=%d", st.Booted, st.BootFailures, st.Shrunk),
		fmt.Sprintf("stats: checkouts=%d waits=%d gave-up=%d", st.Checkouts, st.Waits, st.GaveUp),
		"stats: loads " + strings.Join(loads, " "),
	}
}

func idList(ids []uint64) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = fmt.Sprintf("#%d", id)
	}
	return "[" + strings.Join(s, " ") + "]"
}

func workLine(id int, spec model.Spec, status string, returned bool, result model.Outcome, namesBootErr bool, childDone bool, childErr model.Outcome) string {
	s := fmt.Sprintf("work %d (%v): %s", id, spec, status)
	if returned {
		s += fmt.Sprintf(", returned %s", result)
		if namesBootErr {
			s += " naming the last boot error"
		}
	}
	if childDone {
		s += fmt.Sprintf(", child err %s", childErr)
	}
	return s
}

// modelSnapshot is what the model says.
func modelSnapshot(m *model.Model) snapshot {
	lines := statsLines(m.Stats())
	lines = append(lines,
		"boots blocked in Backend.Boot: "+idList(m.BootsInBackend()),
		"nodes alive: "+idList(m.RunnerIDs()))
	for _, w := range m.Works() {
		status := "not started"
		switch {
		case w.Phase == model.Running:
			status = fmt.Sprintf("running on #%d", w.Runner)
		case w.Runner != 0:
			status = fmt.Sprintf("ran on #%d", w.Runner)
		}
		lines = append(lines, workLine(w.ID, w.Spec, status, w.Returned, w.Result, w.NamesBootError, w.ChildDone, w.ChildErr))
	}
	for i, c := range m.Closes() {
		lines = append(lines, closeLine(i, c.Returned, c.Result))
	}
	return lines
}

func closeLine(i int, returned bool, res model.CloseResult) string {
	if !returned {
		return fmt.Sprintf("close %d: not returned", i+1)
	}
	return fmt.Sprintf("close %d: returned %s", i+1, res)
}

// poolSnapshot is what the pool shows.
func (o *ops) snapshot() snapshot {
	st := o.pool.Stats()
	ms := model.Stats{
		Min: st.Min, Max: st.Max, Runners: st.Runners, Pending: st.Pending, Waiting: st.Waiting,
		InUse: st.InUse, Booted: st.Booted, BootFailures: st.BootFailures, Shrunk: st.Shrunk,
		Checkouts: st.Checkouts, Waits: st.Waits, GaveUp: st.GaveUp,
	}
	for _, l := range st.RunnerLoads {
		ms.RunnerLoads = append(ms.RunnerLoads, model.RunnerLoad{ID: l.ID, Load: l.Load})
	}
	lines := statsLines(ms)
	lines = append(lines,
		"boots blocked in Backend.Boot: "+idList(o.backend.blocked()),
		"nodes alive: "+idList(o.backend.alive()))
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, w := range o.works {
		status := "not started"
		switch {
		case w.started && !w.exited:
			status = fmt.Sprintf("running on #%d", w.runner)
		case w.started:
			status = fmt.Sprintf("ran on #%d", w.runner)
		}
		lines = append(lines, workLine(w.id, w.spec, status, w.returned, w.result, w.namesBootError, w.childDone, w.childErr))
	}
	for i, c := range o.closes {
		lines = append(lines, closeLine(i, c.returned, c.result))
	}
	return lines
}

// diff returns "" when want and got agree, else both, line by line, with
// the differing lines marked.
func diff(want, got snapshot) string {
	if slices.Equal(want, got) {
		return ""
	}
	var b strings.Builder
	for i := range max(len(want), len(got)) {
		var w, g string
		if i < len(want) {
			w = want[i]
		}
		if i < len(got) {
			g = got[i]
		}
		if w == g {
			fmt.Fprintf(&b, "    %s\n", w)
			continue
		}
		fmt.Fprintf(&b, "  - model: %s\n  + pool:  %s\n", w, g)
	}
	return b.String()
}

// eventsDiff compares the pool's hook calls with the model's.
//
// OnGrowEnd and OnShrink never overlap and run in decision order, so they
// must match exactly, in order. OnGrowStart runs in the boot's own
// goroutine, so it may come later than in the model (never earlier): each
// must have the same count, come after every OnGrowEnd/OnShrink that the
// model puts before it (OnShrink before any replacement boot starts,
// SPEC §3.10), and before its own OnGrowEnd.
func eventsDiff(want, got []model.Event) string {
	ordered := func(es []model.Event) []model.Event {
		return slices.DeleteFunc(slices.Clone(es), func(e model.Event) bool { return e.Kind == model.GrowStart })
	}
	starts := func(es []model.Event) map[uint64]int {
		out := map[uint64]int{} // runner ID -> ordered events before it
		n := 0
		for _, e := range es {
			if e.Kind == model.GrowStart {
				out[e.RunnerID] = n
			} else {
				n++
			}
		}
		return out
	}
	var problems []string
	if w, g := ordered(want), ordered(got); !slices.Equal(w, g) {
		problems = append(problems, "OnGrowEnd/OnShrink differ")
	}
	ws, gs := starts(want), starts(got)
	wantStarts := slices.DeleteFunc(slices.Clone(want), func(e model.Event) bool { return e.Kind != model.GrowStart })
	gotStarts := slices.DeleteFunc(slices.Clone(got), func(e model.Event) bool { return e.Kind != model.GrowStart })
	byID := func(a, b model.Event) int { return int(a.RunnerID) - int(b.RunnerID) }
	slices.SortFunc(wantStarts, byID)
	slices.SortFunc(gotStarts, byID)
	if !slices.Equal(wantStarts, gotStarts) {
		problems = append(problems, "OnGrowStart calls differ")
	}
	for id, n := range gs {
		if wn, ok := ws[id]; ok && n < wn {
			problems = append(problems, fmt.Sprintf("OnGrowStart #%d came before an event that precedes it", id))
		}
	}
	for i, e := range got {
		if e.Kind == model.GrowStart && slices.ContainsFunc(got[:i], func(p model.Event) bool {
			return p.Kind == model.GrowEnd && p.RunnerID == e.RunnerID
		}) {
			problems = append(problems, fmt.Sprintf("OnGrowEnd #%d came before its OnGrowStart", e.RunnerID))
		}
	}
	if len(problems) == 0 {
		return ""
	}
	show := func(es []model.Event) string {
		s := make([]string, len(es))
		for i, e := range es {
			s[i] = "      " + e.String()
		}
		return strings.Join(s, "\n")
	}
	return fmt.Sprintf("  %s\n  model events:\n%s\n  pool events:\n%s\n", strings.Join(problems, "; "), show(want), show(got))
}
