package consumer

import (
	"context"
	"time"
)

// SetLagInterval shortens how often c measures lag, so a test need not wait
// the default five seconds.
func SetLagInterval(c *Consumer, d time.Duration) { c.lagInterval = d }

// PruneInbox runs one pruning round of c's inbox.
func PruneInbox(ctx context.Context, c *Consumer) (int64, error) { return c.pruneInbox(ctx) }
