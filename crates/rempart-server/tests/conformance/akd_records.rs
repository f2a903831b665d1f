//! akd records built for storage tests: tree nodes, value states and the
//! Azks record, with placeholder contents.

#![allow(dead_code)]

use akd::storage::types::{DbRecord, ValueState};
use akd::tree_node::{NodeKey, TreeNode, TreeNodeType, TreeNodeWithPreviousValue};
use akd::{AkdLabel, AkdValue, Azks, AzksValue, NodeLabel};

/// A node label of `len` bits, every byte `byte`.
pub fn label(byte: u8, len: u32) -> NodeLabel {
    NodeLabel::new([byte; 32], len)
}

/// A tree node without children.
pub fn node(label: NodeLabel, last_epoch: u64, node_type: TreeNodeType) -> TreeNode {
    TreeNode {
        label,
        last_epoch,
        min_descendant_epoch: 1,
        parent: NodeLabel::root(),
        node_type,
        left_child: None,
        right_child: None,
        hash: AzksValue([last_epoch as u8; 32]),
    }
}

/// A tree node record with its previous state.
pub fn tree_node(latest: TreeNode, previous: Option<TreeNode>) -> DbRecord {
    DbRecord::TreeNode(TreeNodeWithPreviousValue {
        label: latest.label,
        latest_node: latest,
        previous_node: previous,
    })
}

/// `user`'s value `value`, version `version`, published at `epoch`.
pub fn state(user: &str, epoch: u64, version: u64, value: &str) -> ValueState {
    ValueState {
        username: AkdLabel::from(user),
        epoch,
        version,
        label: label(version as u8, 256),
        value: AkdValue::from(value),
    }
}

/// The key of a tree node record.
pub fn node_key(record: &DbRecord) -> NodeKey {
    match record {
        DbRecord::TreeNode(node) => NodeKey(node.label),
        other => panic!("not a tree node: {other:?}"),
    }
}

/// The Azks record at `latest_epoch`.
pub fn azks(latest_epoch: u64) -> DbRecord {
    DbRecord::Azks(Azks {
        latest_epoch,
        num_nodes: 1,
    })
}

/// A tree of three nodes at epoch 7 (an interior node that had another
/// state at epoch 5, a leaf and the root) and three value states of two
/// users.
pub struct SmallTree {
    /// The interior node, with its previous state.
    pub interior: DbRecord,
    /// A leaf.
    pub leaf: DbRecord,
    /// The root.
    pub root: DbRecord,
    /// Alice's two states and Bob's one.
    pub states: [ValueState; 3],
}

impl SmallTree {
    /// The tree.
    pub fn new() -> Self {
        let mut interior = node(label(0b1000_0000, 1), 7, TreeNodeType::Interior);
        interior.left_child = Some(label(0b1000_0000, 2));
        interior.right_child = Some(label(0b1100_0000, 2));
        let mut earlier = node(interior.label, 5, TreeNodeType::Interior);
        earlier.left_child = Some(label(0b1000_0000, 2));
        let interior = tree_node(interior, Some(earlier));
        let leaf = tree_node(node(label(0xab, 256), 6, TreeNodeType::Leaf), None);
        let mut root = node(NodeLabel::root(), 7, TreeNodeType::Root);
        root.right_child = Some(label(0b1000_0000, 1));
        let root = tree_node(root, None);
        let states = [
            state("alice", 1, 1, "first"),
            state("alice", 5, 2, "second"),
            state("bob", 3, 1, "only"),
        ];
        Self {
            interior,
            leaf,
            root,
            states,
        }
    }
}
