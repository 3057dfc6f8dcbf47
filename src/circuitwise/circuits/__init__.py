"""Stage 7: circuits — the model's edge graph, edge and node scores (EAP, EAP-IG, exact), circuit selection.

Node- and neuron-level scores and circuits as MIB defines them: :mod:`circuitwise.circuits.neurons`.

``find_circuit(model, tok, method="eap-ig")`` scores every edge and picks a circuit; the pieces
(:func:`score_edges`, :func:`select_circuit`, :func:`prune_dangling`) are public too.
"""

from circuitwise.circuits.circuit import Circuit
from circuitwise.circuits.discover import Discovery, find_circuit
from circuitwise.circuits.draw import circuit_figure
from circuitwise.circuits.eap import eap
from circuitwise.circuits.eap_ig import eap_ig
from circuitwise.circuits.eap_ig_activations import eap_ig_activations
from circuitwise.circuits.exact import exact_edge_scores
from circuitwise.circuits.graph import Graph, Receiver, Sender, graph_of
from circuitwise.circuits.methods import METHODS, DiscoveryMethod, MethodName, get_method, score_edges, score_nodes
from circuitwise.circuits.neurons import NeuronScores, UnitCircuit, score_neurons, top_units, unit_faithfulness
from circuitwise.circuits.prune import prune_dangling
from circuitwise.circuits.scores import EdgeScores, NodeScores, eap_ig_sign
from circuitwise.circuits.select import SELECTIONS, select_circuit

__all__ = [
    "METHODS", "SELECTIONS", "Circuit", "Discovery", "DiscoveryMethod", "EdgeScores", "Graph", "MethodName",
    "NeuronScores", "NodeScores", "Receiver", "Sender", "UnitCircuit", "circuit_figure", "eap", "eap_ig",
    "eap_ig_activations", "eap_ig_sign", "exact_edge_scores", "find_circuit", "get_method", "graph_of",
    "prune_dangling", "score_edges", "score_neurons", "score_nodes", "select_circuit", "top_units",
    "unit_faithfulness",
]
