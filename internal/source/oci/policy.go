package oci

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"go.podman.io/image/v5/image"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage/pkg/configfile"
)

// builtinPolicyName names the policy used when no policy.json exists.
const builtinPolicyName = "built-in default policy (insecureAcceptAnything)"

// loadPolicy returns the signature policy to enforce and a name for it in
// messages: s.PolicyPath, else sys.SignaturePolicyPath, else the system
// policy.json, else a built-in policy that accepts any image.
func (s *Source) loadPolicy(sys *types.SystemContext) (*signature.Policy, string, error) {
	return loadPolicy(s.PolicyPath, sys, s.log())
}

func loadPolicy(path string, sys *types.SystemContext, log *slog.Logger) (*signature.Policy, string, error) {
	if path == "" {
		path = sys.SignaturePolicyPath
	}
	if path != "" {
		p, err := signature.NewPolicyFromFile(path)
		if err != nil {
			return nil, "", fmt.Errorf("signature policy %s: %w", path, err)
		}
		return p, path, nil
	}
	p, err := signature.DefaultPolicy(sys)
	if errors.Is(err, configfile.ErrConfigFileNotFound) {
		log.Debug("no policy.json found: accepting any image", "policy", builtinPolicyName)
		return &signature.Policy{Default: signature.PolicyRequirements{signature.NewPRInsecureAcceptAnything()}},
			builtinPolicyName, nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("system signature policy: %w", oneLine(err))
	}
	return p, "system policy.json", nil
}

// policyVerdict turns the result of IsRunningImageAllowed into one error.
func policyVerdict(allowed bool, err error) error {
	if allowed && err == nil {
		return nil
	}
	if err == nil {
		err = signature.PolicyRequirementError("image not allowed")
	}
	return err
}

// policyError wraps a policy failure: a rejection wraps ErrPolicyRejected,
// anything else (a signature that could not be fetched) says what failed.
func policyError(policyName string, err error) error {
	var rej signature.PolicyRequirementError
	if errors.As(err, &rej) {
		return fmt.Errorf("%w %s: %w", ErrPolicyRejected, policyName, oneLine(err))
	}
	return fmt.Errorf("checking signature policy %s: %w", policyName, oneLine(err))
}

// CheckPolicy checks the image src serves against the signature policy:
// the file at path, else sys.SignaturePolicyPath, else the system
// policy.json, else accept any image, as [Source.Pull] does. A rejection
// wraps ErrPolicyRejected.
func CheckPolicy(ctx context.Context, path string, sys *types.SystemContext, src types.ImageSource, log *slog.Logger) error {
	policy, name, err := loadPolicy(path, sys, log)
	if err != nil {
		return err
	}
	pc, err := signature.NewPolicyContext(policy)
	if err != nil {
		return fmt.Errorf("signature policy %s: %w", name, err)
	}
	defer func() { _ = pc.Destroy() }()
	allowed, err := pc.IsRunningImageAllowed(ctx, image.UnparsedInstance(src, nil))
	if err := policyVerdict(allowed, err); err != nil {
		return policyError(name, err)
	}
	return nil
}
