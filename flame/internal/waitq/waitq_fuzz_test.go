package waitq

import (
	"slices"
	"testing"
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
					if e != nil {
						t.Fatalf("PopFront on empty = %v", e.Value)
					}
					break
				}
				if e == nil || e.Value != model[0] || e.Queued() {
					t.Fatalf("PopFront = %v, want %d removed", e, model[0])
				}
				model = model[1:]
			case 2: // remove any element, queued or not
				if next == 0 {
					break
				}
				v := int(arg(&i)) % next
				want := slices.Contains(model, v)
				if got := q.Remove(elems[v]); got != want {
					t.Fatalf("Remove(%d) = %v, want %v", v, got, want)
				}
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
				if !slices.Equal(dropped, wantDropped) {
					t.Fatalf("FrontLive dropped %v, want %v", dropped, wantDropped)
				}
				if len(model) == 0 {
					if e != nil {
						t.Fatalf("FrontLive = %d, want nil", e.Value)
					}
				} else if e == nil || e.Value != model[0] || !e.Queued() {
					t.Fatalf("FrontLive = %v, want %d still queued", e, model[0])
				}
			}
			if q.Len() != len(model) {
				t.Fatalf("Len = %d, model has %d", q.Len(), len(model))
			}
			var got []int
			q.Each(func(e *Elem[int]) { got = append(got, e.Value) })
			if !slices.Equal(got, model) && !(len(got) == 0 && len(model) == 0) {
				t.Fatalf("queue %v, model %v", got, model)
			}
		}
	})
}
