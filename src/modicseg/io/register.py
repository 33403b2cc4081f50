"""Rigid registration with SimpleITK (Mattes mutual information, multi-resolution)."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from modicseg.core.convert import to_sitk
from modicseg.core.image import Image


def register_rigid(fixed: Image, moving: Image, fixed_mask: Image | None = None,
                   iterations: int = 200, seed: int = 0) -> sitk.Euler3DTransform:
    """Rigid transform mapping fixed-space points (LPS) to moving-space points.

    Use it with ``modicseg.core.resample.resample_to(moving, fixed, transform)``.  Works across
    contrasts (mutual information); the optional mask restricts the metric to a region.
    """
    fixed_sitk = sitk.Cast(to_sitk(fixed), sitk.sitkFloat32)
    moving_sitk = sitk.Cast(to_sitk(moving), sitk.sitkFloat32)
    initial = sitk.CenteredTransformInitializer(
        fixed_sitk, moving_sitk, sitk.Euler3DTransform(),
        sitk.CenteredTransformInitializerFilter.GEOMETRY)
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=48)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(0.25, seed)
    if fixed_mask is not None:
        method.SetMetricFixedMask(sitk.Cast(to_sitk(fixed_mask.with_array(
            (np.asarray(fixed_mask.array) > 0).astype(np.uint8))), sitk.sitkUInt8))
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=2.0, minStep=1e-4, numberOfIterations=iterations, relaxationFactor=0.5,
        gradientMagnitudeTolerance=1e-8)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([4, 2, 1])
    method.SetSmoothingSigmasPerLevel([2.0, 1.0, 0.0])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    method.SetInitialTransform(initial, inPlace=False)
    result = method.Execute(fixed_sitk, moving_sitk)
    composite = sitk.CompositeTransform(result)
    euler = sitk.Euler3DTransform(composite.GetNthTransform(0)) if composite.GetNumberOfTransforms() else \
        sitk.Euler3DTransform(result)
    return euler
