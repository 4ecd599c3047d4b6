package consumer

import "testing"

func TestSkipped(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		seen                    bool
		want, committed, offset int64
		wantFrom, wantLost      int64
	}{
		"new group, log start":          {false, 0, -1, 40, -1, 0},
		"start at the commit":           {false, 0, 12, 12, 12, 0},
		"start past the commit":         {false, 0, 12, 20, 12, 8},
		"start below the commit":        {false, 0, 12, 10, 12, 0},
		"jump while reading":            {true, 30, 25, 40, 30, 10},
		"handed back at the commit":     {true, 30, 50, 50, 50, 0},
		"handed back past the commit":   {true, 30, 50, 55, 50, 5},
		"jump with no commit yet":       {true, 30, -1, 33, 30, 3},
		"commit ahead of what was read": {true, 30, 45, 40, 45, 0},
	} {
		from, lost := skipped(tc.seen, tc.want, tc.committed, tc.offset)
		if from != tc.wantFrom || lost != tc.wantLost {
			t.Errorf("%s: skipped(%v, %d, %d, %d) = %d, %d; want %d, %d", name, tc.seen, tc.want, tc.committed, tc.offset, from, lost, tc.wantFrom, tc.wantLost)
		}
	}
}
