//! Typed access to a node's ONNX attributes. Only the importer uses these.

use onnx_protobuf::{AttributeProto, NodeProto, attribute_proto::AttributeType};

/// The attributes of one node, looked up by name.
pub struct Attrs<'a> {
    node: &'a NodeProto,
}

impl<'a> Attrs<'a> {
    pub fn new(node: &'a NodeProto) -> Self {
        Attrs { node }
    }

    pub fn get(&self, name: &str) -> Option<&'a AttributeProto> {
        self.node.attribute.iter().find(|a| a.name == name)
    }

    fn ty(a: &AttributeProto) -> Option<AttributeType> {
        a.type_.enum_value().ok()
    }

    pub fn int(&self, name: &str) -> Result<Option<i64>, String> {
        match self.get(name) {
            None => Ok(None),
            Some(a) if Self::ty(a) == Some(AttributeType::INT) || Self::ty(a).is_none() => {
                Ok(Some(a.i))
            }
            Some(_) => Err(format!("attribute '{name}' must be an int")),
        }
    }

    pub fn float(&self, name: &str) -> Result<Option<f32>, String> {
        match self.get(name) {
            None => Ok(None),
            Some(a) if Self::ty(a) == Some(AttributeType::FLOAT) || Self::ty(a).is_none() => {
                Ok(Some(a.f))
            }
            Some(_) => Err(format!("attribute '{name}' must be a float")),
        }
    }

    pub fn ints(&self, name: &str) -> Result<Option<Vec<i64>>, String> {
        match self.get(name) {
            None => Ok(None),
            Some(a) if Self::ty(a) == Some(AttributeType::INTS) || Self::ty(a).is_none() => {
                Ok(Some(a.ints.clone()))
            }
            Some(_) => Err(format!("attribute '{name}' must be a list of ints")),
        }
    }

    pub fn floats(&self, name: &str) -> Result<Option<Vec<f32>>, String> {
        match self.get(name) {
            None => Ok(None),
            Some(a) if Self::ty(a) == Some(AttributeType::FLOATS) || Self::ty(a).is_none() => {
                Ok(Some(a.floats.clone()))
            }
            Some(_) => Err(format!("attribute '{name}' must be a list of floats")),
        }
    }

    pub fn string(&self, name: &str) -> Result<Option<String>, String> {
        match self.get(name) {
            None => Ok(None),
            Some(a) if Self::ty(a) == Some(AttributeType::STRING) || Self::ty(a).is_none() => {
                Ok(Some(String::from_utf8_lossy(&a.s).into_owned()))
            }
            Some(_) => Err(format!("attribute '{name}' must be a string")),
        }
    }

    /// Non-negative ints (sizes, strides, pads).
    pub fn usizes(&self, name: &str) -> Result<Option<Vec<usize>>, String> {
        match self.ints(name)? {
            None => Ok(None),
            Some(v) => v
                .into_iter()
                .map(|x| {
                    usize::try_from(x)
                        .map_err(|_| format!("attribute '{name}' has negative entry {x}"))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
        }
    }
}
