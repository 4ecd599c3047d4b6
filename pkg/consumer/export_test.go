package consumer

import "time"

// SetLagInterval shortens how often c measures lag, so a test need not wait
// the default five seconds.
func SetLagInterval(c *Consumer, d time.Duration) { c.lagInterval = d }
