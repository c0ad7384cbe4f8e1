package model

import (
	"fmt"
	"time"
)

// Boot is a pending boot.
type Boot struct {
	ID        uint64
	Min       bool          // booted to reach or keep Min
	InBackend time.Duration // when Backend.Boot is called: OnGrowStart has returned
	Deadline  time.Duration // BootTimeout after that (SPEC §3.6)
	slack     time.Duration // how much earlier the pool may reach it (clock.go)
}

// evaluate starts the boots that Min and demand call for. The scaler runs it
// after every change; the model after every transition (settle).
//
// The boot rule (SPEC §3.2): a runner boots while every booted runner is full (so
// callers are queued), booted + booting < Max, no retry is pending (SPEC §3.6),
// and pending boots × MaxConcurrency < callers queued — as many boots as the
// rule allows, not just one. Runners that crashed or finished single use are
// replaced first, up to Min (SPEC §3.9), and Resize raising Min boots the same way
// (SPEC §3.11).
//
// Min upkeep waits while a retry is pending (like every boot, SPEC §3.2). A
// closing pool (SPEC §3.12) keeps no Min; it boots only for accepted casts still
// queued (with the usual retry rule), and cancels pending boots as soon as
// no caller is queued.
func (m *Model) evaluate() {
	if m.stopped {
		return
	}
	if m.closing {
		if len(m.queue) == 0 {
			m.cancelBoots()
			return
		}
	} else if m.minDirty && !m.retryPending {
		m.minDirty = false
		for m.total() < m.min {
			m.startBoot(true)
		}
	}
	for !m.retryPending && m.total() < m.max && len(m.boots)*m.cfg.MaxConcurrency < len(m.queue) {
		m.startBoot(false)
	}
}

// startBoot decides a boot: it takes the next ID and fires OnGrowStart with
// the count including itself (SPEC §3.10, §3.13).
func (m *Model) startBoot(min bool) {
	inBackend := m.now + m.cfg.GrowStartDelay
	m.hooksUntil = max(m.hooksUntil, inBackend)
	b := &Boot{ID: m.nextID, Min: min, InBackend: inBackend, Deadline: after(inBackend, m.cfg.BootTimeout), slack: m.slack}
	m.nextID++
	m.boots[b.ID] = b
	m.emit(Event{Kind: GrowStart, RunnerID: b.ID, Count: m.total()})
}

// CompleteBoot is Backend.Boot returning a node for boot id: the runner
// joins, queued callers are served from it, up to MaxConcurrency of them in
// FIFO order (SPEC §3.2b), its idle period starts (SPEC §3.7), Booted++, and OnGrowEnd
// fires with a nil error (SPEC §3.10).
func (m *Model) CompleteBoot(id uint64) {
	b := m.pendingBoot(id)
	delete(m.boots, id)
	r := &Runner{ID: id, Min: b.Min}
	m.runners[id] = r
	m.booted++
	m.serve()
	m.armIdle(r)
	m.emit(Event{Kind: GrowEnd, RunnerID: id, Count: m.total(), Detail: GrowOK})
	m.settle()
}

// FailBoot is Backend.Boot returning an error for boot id (SPEC §3.6).
func (m *Model) FailBoot(id uint64) {
	m.bootFailedNow(m.pendingBoot(id))
	m.settle()
}

// bootFailedNow is a boot failing, by error or by BootTimeout (SPEC §3.6):
// BootFailures++, OnGrowEnd with the error, the waiters stay queued, and if
// unmet demand remains and no retry is pending, one retry is scheduled
// RetryAfter from now. No demand, no retry: a backend that always fails
// never loops.
func (m *Model) bootFailedNow(b *Boot) {
	delete(m.boots, b.ID)
	m.bootFailures++
	m.bootFailed = true
	m.emit(Event{Kind: GrowEnd, RunnerID: b.ID, Count: m.total(), Detail: GrowFailed})
	if !m.retryPending && m.unmet() {
		m.retryPending = true
		m.retryAt = m.now + RetryAfter
		m.retrySlack = m.slack
	}
}

// unmet reports demand that the boots under way will not serve and that Max
// leaves room for (SPEC §3.6).
func (m *Model) unmet() bool {
	return len(m.queue) > len(m.boots)*m.cfg.MaxConcurrency && m.total() < m.max
}

// fireRetry is the retry timer firing: the demand is checked again by the
// settle that follows (SPEC §3.6).
func (m *Model) fireRetry() {
	m.retryPending = false
}

// cancelBoots cancels every pending boot, lowest ID first: OnGrowEnd with
// ErrBootCanceled, which is no boot failure.
func (m *Model) cancelBoots() {
	for _, id := range m.PendingBoots() {
		m.cancelBoot(id)
	}
}

func (m *Model) cancelBoot(id uint64) {
	delete(m.boots, id)
	m.emit(Event{Kind: GrowEnd, RunnerID: id, Count: m.total(), Detail: GrowCanceled})
}

func (m *Model) pendingBoot(id uint64) *Boot {
	b := m.boots[id]
	if b == nil {
		panic(fmt.Sprintf("model: boot %d is not pending", id))
	}
	return b
}
