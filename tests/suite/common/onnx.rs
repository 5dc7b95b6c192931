//! ONNX classifiers built in the tests from a model's weights (prost + tract's protobuf types,
//! no Python): an MLP as Gemm → Relu … → Gemm → Softmax, with PyTorch-style node names.

use mode::model::Net;
use mode::model::weights::Param;
use prost::Message;
use tract_onnx::pb::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto, attribute_proto, tensor_shape_proto, type_proto,
};

fn value(name: &str, dims: &[Option<i64>]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            denotation: String::new(),
            value: Some(match d {
                Some(v) => tensor_shape_proto::dimension::Value::DimValue(*v),
                None => tensor_shape_proto::dimension::Value::DimParam("N".into()),
            }),
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            denotation: String::new(),
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: 1, // FLOAT
                shape: Some(TensorShapeProto { dim }),
            })),
        }),
        doc_string: String::new(),
    }
}

fn tensor(name: &str, dims: &[usize], values: &[f32]) -> TensorProto {
    TensorProto {
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: 1,
        name: name.into(),
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], scope: &str, attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![format!("/{scope}/{op}_output_0")],
        name: format!("/{scope}/{op}"),
        op_type: op.into(),
        attribute: attrs,
        ..Default::default()
    }
}

/// The ONNX file of a dense-only model (`model.input = "flat"`), ending in a Softmax.
pub fn mlp(net: &Net) -> Vec<u8> {
    let mut nodes = Vec::new();
    let mut inits = Vec::new();
    let mut x = "input".to_string();
    let mut dense: Vec<(&ndarray::Array2<f32>, &ndarray::Array1<f32>)> = net
        .weights
        .layers
        .iter()
        .flatten()
        .map(|p| match p {
            Param::Dense(d) => (&d.w, &d.b),
            Param::Conv(_) => panic!("an MLP"),
        })
        .collect();
    dense.push((&net.weights.output.w, &net.weights.output.b));
    let last = dense.len();
    for (i, (w, b)) in dense.into_iter().enumerate() {
        let (wn, bn) = (format!("fc{}.weight", i + 1), format!("fc{}.bias", i + 1));
        inits.push(tensor(&wn, &[w.nrows(), w.ncols()], w.as_slice().unwrap()));
        inits.push(tensor(&bn, &[b.len()], b.as_slice().unwrap()));
        let g = node("Gemm", &[&x, &wn, &bn], &format!("fc{}", i + 1), vec![]);
        x = g.output[0].clone();
        nodes.push(g);
        if i + 1 < last {
            let r = node("Relu", &[&x], &format!("relu{}", i + 1), vec![]);
            x = r.output[0].clone();
            nodes.push(r);
        }
    }
    let axis = AttributeProto {
        name: "axis".into(),
        i: 1,
        r#type: attribute_proto::AttributeType::Int as i32,
        ..Default::default()
    };
    let mut sm = node("Softmax", &[&x], "softmax", vec![axis]);
    sm.output = vec!["probs".into()];
    nodes.push(sm);
    let graph = GraphProto {
        node: nodes,
        name: "mlp".into(),
        initializer: inits,
        input: vec![value("input", &[None, Some(net.arch.inputs() as i64)])],
        output: vec![value("probs", &[None, Some(net.arch.classes as i64)])],
        ..Default::default()
    };
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        producer_name: "mode tests".into(),
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}
