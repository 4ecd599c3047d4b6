package e2e

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sagashop/sagashop/pkg/testenv"
)

// TestLoadSmoke runs the load tool (sagashopctl load, which make bench runs
// at full size) for a few seconds at a low rate against the stack: the same
// open-loop schedule, scenario mix, fixtures and invariant checks, so the
// benchmark's instrument is known to work before anyone trusts its figures.
func TestLoadSmoke(t *testing.T) {
	s := startStack(t)
	root := testenv.RepoRoot(t)
	bin := filepath.Join(t.TempDir(), "sagashopctl")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = filepath.Join(root, "tools", "sagashopctl")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build sagashopctl: %v\n%s", err, out)
	}
	url := func(svc string) string { return "http://" + s.proc(svc).addr }
	cmd := exec.Command(bin, "load", "-quiet", "-seed", "1", "-rate", "25", "-duration", "3s", "-drain", "60s", "-customers", "10", "-skus", "3",
		"-order", url("order"), "-payment", url("payment"), "-inventory", url("inventory"), "-shipping", url("shipping"), "-email", url("email"))
	start := time.Now()
	out, err := cmd.CombinedOutput()
	t.Logf("sagashopctl load (%s):\n%s", time.Since(start).Round(time.Millisecond), out)
	if err != nil {
		t.Fatalf("sagashopctl load: %v", err)
	}
	for _, want := range []string{"placed 75, accepted 75, terminal 75", "scenario ship", "scenario unpaid", "scenario out_of_stock", "conserved: OK"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the load report lacks %q", want)
		}
	}
}
