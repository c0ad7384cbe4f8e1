package waitq

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzQueueMatchesSliceModel applies byte-coded operations to a Queue and to
// a plain slice, and checks they agree after each one.
func FuzzQueueMatchesSliceModel(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 2, 3, 0, 4})
	f.Add([]byte{0, 0, 0, 0, 2, 1, 2, 1, 3, 0, 3, 1, 3, 2})
	f.Add([]byte{0, 2, 0, 2, 0, 4, 9, 1, 1, 1})
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 300 {
			ops = ops[:300] // longer histories find nothing new, only cost O(n^2)
		}
		var q Queue[int]
		elems := map[int]*Elem[int]{}
		var model []int // queued values, head first
		dead := map[int]bool{}
		next := 0
		arg := func(i *int) byte {
			if *i+1 < len(ops) {
				*i++
				return ops[*i]
			}
			return 0
		}
		q.Lock()
		defer q.Unlock()
		for i := 0; i < len(ops); i++ {
			switch ops[i] % 5 {
			case 0: // push a new element
				e := &Elem[int]{Value: next}
				elems[next] = e
				q.PushBack(e)
				model = append(model, next)
				next++
			case 1: // pop the head
				e := q.PopFront()
				if len(model) == 0 {
					require.Nil(t, e, "PopFront on empty")
					break
				}
				require.NotNil(t, e, "PopFront = nil, want %d removed", model[0])
				require.Equal(t, model[0], e.Value, "PopFront = %v, want %d removed", e, model[0])
				require.False(t, e.Queued(), "PopFront = %v, want %d removed", e, model[0])
				model = model[1:]
			case 2: // remove any element, queued or not
				if next == 0 {
					break
				}
				v := int(arg(&i)) % next
				want := slices.Contains(model, v)
				require.Equal(t, want, q.Remove(elems[v]), "Remove(%d)", v)
				model = slices.DeleteFunc(model, func(x int) bool { return x == v })
			case 3: // mark an element dead
				if next > 0 {
					dead[int(arg(&i))%next] = true
				}
			case 4: // skip dead elements at the head
				var dropped []int
				e := q.FrontLive(func(v int) bool { return !dead[v] }, func(v int) { dropped = append(dropped, v) })
				var wantDropped []int
				for len(model) > 0 && dead[model[0]] {
					wantDropped = append(wantDropped, model[0])
					model = model[1:]
				}
				// Both are nil when empty (built by append), so Equal
				// compares them as slices.Equal would.
				require.Equal(t, wantDropped, dropped, "FrontLive dropped")
				if len(model) == 0 {
					require.Nil(t, e, "FrontLive, want nil")
				} else {
					require.NotNil(t, e, "FrontLive = nil, want %d still queued", model[0])
					require.Equal(t, model[0], e.Value, "FrontLive = %v, want %d still queued", e, model[0])
					require.True(t, e.Queued(), "FrontLive = %v, want %d still queued", e, model[0])
				}
			}
			require.Equal(t, len(model), q.Len(), "Len = %d, model has %d", q.Len(), len(model))
			var got []int
			q.Each(func(e *Elem[int]) { got = append(got, e.Value) })
			// An emptied model is not nil, got is: empty matches empty.
			if len(model) == 0 {
				require.Empty(t, got, "queue %v, model %v", got, model)
			} else {
				require.Equal(t, model, got, "queue %v, model %v", got, model)
			}
		}
	})
}
