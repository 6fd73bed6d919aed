// Package extbundle stages the chart as an Azure Arc / AKS cluster extension bundle (the input of the Azure
// Marketplace's packaging tool, container-package-app) and checks offline what that tool would check: the
// manifest's fields, a chart without archives that `helm lint --strict` passes, every image by digest under
// global.azure.images, the ARM template's parameters and the portal's UI definition. It also evaluates the ARM
// template's configurationSettings as the extension manager hands them to Helm, so tests render the chart exactly
// as an extension install would.
//
// It is CI and test code: no product package imports it.
package extbundle
