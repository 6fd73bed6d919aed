package postrender

import "errors"

// Errors users see. Each wraps into a message that names the file, patch or object at fault.
var (
	// ErrNoKustomization: the overlay directory has no kustomization file.
	ErrNoKustomization = errors.New("no kustomization.yaml")
	// ErrChartOutputNotListed: the overlay's kustomization does not list the chart's output.
	ErrChartOutputNotListed = errors.New("the kustomization does not list the chart's output " + ResourceName + " in its resources")
	// ErrReservedName: a file named ResourceName exists in the overlay directory.
	ErrReservedName = errors.New(ResourceName + " is the post-renderer's name for the chart's output; remove or rename that file")
	// ErrPatchMatchesNothing: a patch selected no object of the chart's output.
	ErrPatchMatchesNothing = errors.New("matches no object of the chart's output")
	// ErrNoRegistryService: trust distribution was turned on for output that holds no registry Service.
	ErrNoRegistryService = errors.New("the chart's output holds no registry Service (kind Service, label app.kubernetes.io/component=registry) to take the clusterIP, namespace and name from")
	// ErrKustomize: kustomize failed.
	ErrKustomize = errors.New("kustomize")
)
