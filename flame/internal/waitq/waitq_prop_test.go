package waitq

import (
	"fmt"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"
)

// TestQueueMatchesSliceModel drives a Queue and a plain slice (the model: a
// FIFO list of elements, head first) through random histories of push,
// pop, front, remove (of queued and unqueued elements), pop-until-live
// (FrontLive) and remove-while-iterating (Each), and checks after every
// step that both hold the same elements in the same order, that the links
// agree in both directions, that Queued and Len are exact, and that every
// operation returned what the model says.
func TestQueueMatchesSliceModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		var q Queue[int]
		var model []*Elem[int] // queued elements, head first
		var all []*Elem[int]   // every element made so far; value i+1 is all[i]

		modelIndex := func(e *Elem[int]) int { return slices.Index(model, e) }
		// values draws a set of values among the elements made so far.
		values := func(t *rapid.T, label string) map[int]bool {
			set := map[int]bool{}
			if len(all) == 0 {
				return set
			}
			for _, v := range rapid.SliceOfDistinct(rapid.IntRange(1, len(all)), rapid.ID[int]).Draw(t, label) {
				set[v] = true
			}
			return set
		}

		t.Repeat(map[string]func(*rapid.T){
			"": func(t *rapid.T) { propCheck(t, &q, model, all) },

			"push new": func(t *rapid.T) {
				e := &Elem[int]{Value: len(all) + 1}
				all = append(all, e)
				q.Lock()
				q.PushBack(e)
				q.Unlock()
				model = append(model, e)
			},
			"push again": func(t *rapid.T) { // an element that left the queue comes back
				var out []*Elem[int]
				for _, e := range all {
					if modelIndex(e) < 0 {
						out = append(out, e)
					}
				}
				if len(out) == 0 {
					t.Skip("every element is queued")
				}
				e := rapid.SampledFrom(out).Draw(t, "element")
				q.Lock()
				q.PushBack(e)
				q.Unlock()
				model = append(model, e)
			},
			"push queued panics": func(t *rapid.T) {
				if len(model) == 0 {
					t.Skip("nothing queued")
				}
				e := rapid.SampledFrom(model).Draw(t, "element")
				q.Lock()
				defer q.Unlock()
				defer func() {
					require.NotNil(t, recover(), "PushBack of queued element %d did not panic", e.Value)
				}()
				q.PushBack(e)
			},
			"pop": func(t *rapid.T) {
				q.Lock()
				got := q.PopFront()
				q.Unlock()
				var want *Elem[int]
				if len(model) > 0 {
					want, model = model[0], model[1:]
				}
				require.Same(t, want, got, "PopFront = %v, want %v", propName(got), propName(want))
			},
			"front": func(t *rapid.T) {
				q.Lock()
				got := q.Front()
				q.Unlock()
				var want *Elem[int]
				if len(model) > 0 {
					want = model[0]
				}
				require.Same(t, want, got, "Front = %v, want %v", propName(got), propName(want))
			},
			"remove": func(t *rapid.T) {
				if len(all) == 0 {
					t.Skip("no element yet")
				}
				e := rapid.SampledFrom(all).Draw(t, "element")
				q.Lock()
				got := q.Remove(e)
				q.Unlock()
				i := modelIndex(e)
				require.Equal(t, i >= 0, got, "Remove(%d)", e.Value)
				if i >= 0 {
					model = slices.Delete(model, i, i+1)
				}
			},
			"pop until live": func(t *rapid.T) {
				dead := values(t, "dead values")
				var gotDead []int
				q.Lock()
				got := q.FrontLive(func(v int) bool { return !dead[v] }, func(v int) { gotDead = append(gotDead, v) })
				q.Unlock()
				var wantDead []int
				for len(model) > 0 && dead[model[0].Value] {
					wantDead = append(wantDead, model[0].Value)
					model = model[1:]
				}
				var want *Elem[int]
				if len(model) > 0 {
					want = model[0]
				}
				require.Same(t, want, got, "FrontLive = %v dropping %v, want %v dropping %v", propName(got), gotDead, propName(want), wantDead)
				// Both are nil when empty (built by append), so Equal
				// compares them as slices.Equal would.
				require.Equal(t, wantDead, gotDead, "FrontLive = %v dropping %v, want %v dropping %v", propName(got), gotDead, propName(want), wantDead)
			},
			"remove while iterating": func(t *rapid.T) {
				drop := values(t, "values to remove")
				var visited []int
				q.Lock()
				q.Each(func(e *Elem[int]) {
					visited = append(visited, e.Value)
					if drop[e.Value] {
						q.Remove(e)
					}
				})
				q.Unlock()
				var want []int
				for _, e := range model {
					want = append(want, e.Value)
				}
				// Both are nil when empty (built by append), so Equal
				// compares them as slices.Equal would.
				require.Equal(t, want, visited, "Each visited")
				model = slices.DeleteFunc(model, func(e *Elem[int]) bool { return drop[e.Value] })
			},
		})
	})
}

// propCheck compares q with the model: order both ways, links, Queued, Len.
func propCheck(t *rapid.T, q *Queue[int], model, all []*Elem[int]) {
	q.Lock()
	defer q.Unlock()
	var fwd, back []*Elem[int]
	var prev *Elem[int]
	for e := q.head; e != nil && len(fwd) <= len(all); e = e.next {
		require.Same(t, prev, e.prev, "element %d: prev link is %v, want %v", e.Value, propName(e.prev), propName(prev))
		fwd = append(fwd, e)
		prev = e
	}
	require.Same(t, prev, q.tail, "tail is %v, want the last linked element %v", propName(q.tail), propName(prev))
	for e := q.tail; e != nil && len(back) <= len(all); e = e.prev {
		back = append(back, e)
	}
	slices.Reverse(back)
	// slices.Equal, not Equal: the elements must be the same pointers (Equal
	// would accept equal copies), and an empty model may be non-nil.
	require.True(t, slices.Equal(fwd, model) && slices.Equal(back, model),
		"queue holds %v (backwards: %v), model %v", propNames(fwd), propNames(back), propNames(model))
	require.Equal(t, len(model), q.Len(), "Len = %d, model holds %d", q.Len(), len(model))
	for _, e := range all {
		require.Equal(t, slices.Contains(model, e), e.Queued(), "element %d: Queued", e.Value)
		if !e.Queued() {
			require.Nil(t, e.prev, "element %d is out of the queue but keeps its links", e.Value)
			require.Nil(t, e.next, "element %d is out of the queue but keeps its links", e.Value)
		}
	}
}

func propName(e *Elem[int]) string {
	if e == nil {
		return "nil"
	}
	return fmt.Sprint(e.Value)
}

func propNames(es []*Elem[int]) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = propName(e)
	}
	return out
}
