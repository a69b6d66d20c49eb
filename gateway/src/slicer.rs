//! A version's slice feature (named by its model card), read from each
//! request's inputs for the prediction log, so that realized performance
//! can be reported per slice.

use sluice_registry_client::slices::SliceSpec;

use crate::contract::{Place, place_of};
use crate::signature::Signature;
use crate::tensor::Tensor;

/// Reads the card's slice feature from a request's inputs.
pub struct Slicer {
    pub spec: SliceSpec,
    place: Place,
}

impl Slicer {
    /// `None` when the feature is not an input column of this signature.
    pub fn new(spec: &SliceSpec, signature: &Signature) -> Option<Slicer> {
        Some(Slicer {
            spec: spec.clone(),
            place: place_of(&spec.feature, signature)?,
        })
    }

    /// Each row's value of the feature.
    pub fn values(&self, inputs: &[Tensor]) -> Vec<f64> {
        let rows = inputs.first().map_or(0, Tensor::rows);
        (0..rows).map(|row| self.place.value(inputs, row)).collect()
    }
}
