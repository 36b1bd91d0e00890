// Code generated via abigen V2 - DO NOT EDIT.
// This file is a generated binding and any manual changes will be lost.

package settlementabi

import (
	"bytes"
	"errors"
	"math/big"

	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/accounts/abi/bind/v2"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
)

// Reference imports to suppress errors if they are not otherwise used.
var (
	_ = bytes.Equal
	_ = errors.New
	_ = big.NewInt
	_ = common.Big1
	_ = types.BloomLookup
	_ = abi.ConvertType
)

// SettlementBatchInfo is an auto generated low-level Go binding around an user-defined struct.
type SettlementBatchInfo struct {
	Root        [32]byte
	EventCount  uint64
	PeriodStart uint64
	PeriodEnd   uint64
	BlockNumber uint64
}

// SettlementReconciliation is an auto generated low-level Go binding around an user-defined struct.
type SettlementReconciliation struct {
	Answer     uint8
	ReasonHash [32]byte
}

// SettlementTerminalInfo is an auto generated low-level Go binding around an user-defined struct.
type SettlementTerminalInfo struct {
	Operator        [32]byte
	PublicKey       [32]byte
	StopHash        [32]byte
	RegisteredBlock uint64
	RevokedBlock    uint64
}

// SettlementMetaData contains all meta data concerning the Settlement contract.
var SettlementMetaData = bind.MetaData{
	ABI: "[{\"inputs\":[{\"internalType\":\"address\",\"name\":\"clearingHouse_\",\"type\":\"address\"}],\"stateMutability\":\"nonpayable\",\"type\":\"constructor\"},{\"inputs\":[{\"internalType\":\"uint64\",\"name\":\"batchId\",\"type\":\"uint64\"},{\"internalType\":\"bytes32\",\"name\":\"operator\",\"type\":\"bytes32\"}],\"name\":\"AlreadyAnswered\",\"type\":\"error\"},{\"inputs\":[{\"internalType\":\"bytes32\",\"name\":\"operator\",\"type\":\"bytes32\"}],\"name\":\"BalanceOverflow\",\"type\":\"error\"},{\"inputs\":[{\"internalType\":\"uint64\",\"name\":\"id\",\"type\":\"uint64\"}],\"name\":\"BatchExists\",\"type\":\"error\"},{\"inputs\":[{\"internalType\":\"uint64\",\"name\":\"expected\",\"type\":\"uint64\"},{\"internalType\":\"uint64\",\"name\":\"got\",\"type\":\"uint64\"}],\"name\":\"BatchOutOfOrder\",\"type\":\"error\"},{\"inputs\":[{\"internalType\":\"string\",\"name\":\"what\",\"type\":\"string\"}],\"name\":\"InvalidArgument\",\"type\":\"error\"},{\"inputs\":[{\"internalType\":\"uint256\",\"name\":\"index\",\"type\":\"uint256\"}],\"name\":\"InvalidOperatorOrder\",\"type\":\"error\"},{\"inputs\":[{\"internalType\":\"uint64\",\"name\":\"periodStart\",\"type\":\"uint64\"},{\"internalType\":\"uint64\",\"name\":\"periodEnd\",\"type\":\"uint64\"}],\"name\":\"InvalidPeriod\",\"type\":\"error\"},{\"inputs\":[{\"internalType\":\"uint256\",\"name\":\"a\",\"type\":\"uint256\"},{\"internalType\":\"uint256\",\"name\":\"b\",\"type\":\"uint256\"}],\"name\":\"LengthMismatch\",\"type\":\"error\"},{\"inputs\":[{\"internalType\":\"address\",\"name\":\"caller\",\"type\":\"address\"}],\"name\":\"NotAdmin\",\"type\":\"error\"},{\"inputs\":[{\"internalType\":\"address\",\"name\":\"caller\",\"type\":\"address\"}],\"name\":\"NotClearingHouse\",\"type\":\"error\"},{\"inputs\":[{\"internalType\":\"address\",\"name\":\"caller\",\"type\":\"address\"}],\"name\":\"NotOperator\",\"type\":\"error\"},{\"inputs\":[{\"internalType\":\"bytes32\",\"name\":\"terminalIdHash\",\"type\":\"bytes32\"},{\"internalType\":\"bytes32\",\"name\":\"owner\",\"type\":\"bytes32\"},{\"internalType\":\"bytes32\",\"name\":\"caller\",\"type\":\"bytes32\"}],\"name\":\"NotTerminalOwner\",\"type\":\"error\"},{\"inputs\":[{\"internalType\":\"bytes32\",\"name\":\"operator\",\"type\":\"bytes32\"},{\"internalType\":\"address\",\"name\":\"account\",\"type\":\"address\"}],\"name\":\"OperatorExists\",\"type\":\"error\"},{\"inputs\":[{\"internalType\":\"string\",\"name\":\"id\",\"type\":\"string\"}],\"name\":\"TerminalAlreadyRevoked\",\"type\":\"error\"},{\"inputs\":[{\"internalType\":\"string\",\"name\":\"id\",\"type\":\"string\"}],\"name\":\"TerminalExists\",\"type\":\"error\"},{\"inputs\":[{\"internalType\":\"uint64\",\"name\":\"id\",\"type\":\"uint64\"}],\"name\":\"UnknownBatch\",\"type\":\"error\"},{\"inputs\":[{\"internalType\":\"bytes32\",\"name\":\"operator\",\"type\":\"bytes32\"}],\"name\":\"UnknownOperator\",\"type\":\"error\"},{\"inputs\":[{\"internalType\":\"string\",\"name\":\"id\",\"type\":\"string\"}],\"name\":\"UnknownTerminal\",\"type\":\"error\"},{\"anonymous\":false,\"inputs\":[{\"indexed\":true,\"internalType\":\"uint64\",\"name\":\"batchId\",\"type\":\"uint64\"},{\"indexed\":true,\"internalType\":\"bytes32\",\"name\":\"operator\",\"type\":\"bytes32\"}],\"name\":\"BatchAcknowledged\",\"type\":\"event\"},{\"anonymous\":false,\"inputs\":[{\"indexed\":true,\"internalType\":\"uint64\",\"name\":\"batchId\",\"type\":\"uint64\"},{\"indexed\":false,\"internalType\":\"bytes32\",\"name\":\"root\",\"type\":\"bytes32\"},{\"indexed\":false,\"internalType\":\"uint64\",\"name\":\"eventCount\",\"type\":\"uint64\"},{\"indexed\":false,\"internalType\":\"uint64\",\"name\":\"periodStart\",\"type\":\"uint64\"},{\"indexed\":false,\"internalType\":\"uint64\",\"name\":\"periodEnd\",\"type\":\"uint64\"},{\"indexed\":false,\"internalType\":\"uint256\",\"name\":\"operatorCount\",\"type\":\"uint256\"}],\"name\":\"BatchCommitted\",\"type\":\"event\"},{\"anonymous\":false,\"inputs\":[{\"indexed\":true,\"internalType\":\"uint64\",\"name\":\"batchId\",\"type\":\"uint64\"},{\"indexed\":true,\"internalType\":\"bytes32\",\"name\":\"operator\",\"type\":\"bytes32\"},{\"indexed\":false,\"internalType\":\"bytes32\",\"name\":\"reasonHash\",\"type\":\"bytes32\"}],\"name\":\"BatchDisputed\",\"type\":\"event\"},{\"anonymous\":false,\"inputs\":[{\"indexed\":false,\"internalType\":\"address\",\"name\":\"previous\",\"type\":\"address\"},{\"indexed\":false,\"internalType\":\"address\",\"name\":\"current\",\"type\":\"address\"}],\"name\":\"ClearingHouseChanged\",\"type\":\"event\"},{\"anonymous\":false,\"inputs\":[{\"indexed\":true,\"internalType\":\"bytes32\",\"name\":\"operator\",\"type\":\"bytes32\"},{\"indexed\":false,\"internalType\":\"address\",\"name\":\"previous\",\"type\":\"address\"},{\"indexed\":false,\"internalType\":\"address\",\"name\":\"account\",\"type\":\"address\"}],\"name\":\"OperatorAccountReplaced\",\"type\":\"event\"},{\"anonymous\":false,\"inputs\":[{\"indexed\":true,\"internalType\":\"bytes32\",\"name\":\"operator\",\"type\":\"bytes32\"},{\"indexed\":false,\"internalType\":\"address\",\"name\":\"account\",\"type\":\"address\"}],\"name\":\"OperatorAdmitted\",\"type\":\"event\"},{\"anonymous\":false,\"inputs\":[{\"indexed\":true,\"internalType\":\"uint64\",\"name\":\"batchId\",\"type\":\"uint64\"},{\"indexed\":true,\"internalType\":\"bytes32\",\"name\":\"operator\",\"type\":\"bytes32\"},{\"indexed\":false,\"internalType\":\"int256\",\"name\":\"net\",\"type\":\"int256\"},{\"indexed\":false,\"internalType\":\"int256\",\"name\":\"balance\",\"type\":\"int256\"}],\"name\":\"OperatorSettled\",\"type\":\"event\"},{\"anonymous\":false,\"inputs\":[{\"indexed\":true,\"internalType\":\"bytes32\",\"name\":\"terminalIdHash\",\"type\":\"bytes32\"},{\"indexed\":true,\"internalType\":\"bytes32\",\"name\":\"operator\",\"type\":\"bytes32\"},{\"indexed\":false,\"internalType\":\"string\",\"name\":\"terminalId\",\"type\":\"string\"},{\"indexed\":false,\"internalType\":\"string\",\"name\":\"stopId\",\"type\":\"string\"},{\"indexed\":false,\"internalType\":\"bytes32\",\"name\":\"publicKey\",\"type\":\"bytes32\"},{\"indexed\":false,\"internalType\":\"bytes\",\"name\":\"keyProof\",\"type\":\"bytes\"}],\"name\":\"TerminalRegistered\",\"type\":\"event\"},{\"anonymous\":false,\"inputs\":[{\"indexed\":true,\"internalType\":\"bytes32\",\"name\":\"terminalIdHash\",\"type\":\"bytes32\"},{\"indexed\":true,\"internalType\":\"bytes32\",\"name\":\"operator\",\"type\":\"bytes32\"},{\"indexed\":false,\"internalType\":\"string\",\"name\":\"terminalId\",\"type\":\"string\"}],\"name\":\"TerminalRevoked\",\"type\":\"event\"},{\"inputs\":[],\"name\":\"VERSION\",\"outputs\":[{\"internalType\":\"uint256\",\"name\":\"\",\"type\":\"uint256\"}],\"stateMutability\":\"view\",\"type\":\"function\"},{\"inputs\":[{\"internalType\":\"uint64\",\"name\":\"batchId\",\"type\":\"uint64\"}],\"name\":\"acknowledgeBatch\",\"outputs\":[],\"stateMutability\":\"nonpayable\",\"type\":\"function\"},{\"inputs\":[],\"name\":\"admin\",\"outputs\":[{\"internalType\":\"address\",\"name\":\"\",\"type\":\"address\"}],\"stateMutability\":\"view\",\"type\":\"function\"},{\"inputs\":[{\"internalType\":\"bytes32\",\"name\":\"id\",\"type\":\"bytes32\"},{\"internalType\":\"address\",\"name\":\"account\",\"type\":\"address\"}],\"name\":\"admitOperator\",\"outputs\":[],\"stateMutability\":\"nonpayable\",\"type\":\"function\"},{\"inputs\":[{\"internalType\":\"uint64\",\"name\":\"id\",\"type\":\"uint64\"}],\"name\":\"batch\",\"outputs\":[{\"components\":[{\"internalType\":\"bytes32\",\"name\":\"root\",\"type\":\"bytes32\"},{\"internalType\":\"uint64\",\"name\":\"eventCount\",\"type\":\"uint64\"},{\"internalType\":\"uint64\",\"name\":\"periodStart\",\"type\":\"uint64\"},{\"internalType\":\"uint64\",\"name\":\"periodEnd\",\"type\":\"uint64\"},{\"internalType\":\"uint64\",\"name\":\"blockNumber\",\"type\":\"uint64\"}],\"internalType\":\"structSettlement.BatchInfo\",\"name\":\"\",\"type\":\"tuple\"}],\"stateMutability\":\"view\",\"type\":\"function\"},{\"inputs\":[],\"name\":\"clearingHouse\",\"outputs\":[{\"internalType\":\"address\",\"name\":\"\",\"type\":\"address\"}],\"stateMutability\":\"view\",\"type\":\"function\"},{\"inputs\":[{\"internalType\":\"uint64\",\"name\":\"id\",\"type\":\"uint64\"},{\"internalType\":\"bytes32\",\"name\":\"root\",\"type\":\"bytes32\"},{\"internalType\":\"uint64\",\"name\":\"eventCount\",\"type\":\"uint64\"},{\"internalType\":\"uint64\",\"name\":\"periodStart\",\"type\":\"uint64\"},{\"internalType\":\"uint64\",\"name\":\"periodEnd\",\"type\":\"uint64\"},{\"internalType\":\"bytes32[]\",\"name\":\"operators\",\"type\":\"bytes32[]\"},{\"internalType\":\"int256[]\",\"name\":\"nets\",\"type\":\"int256[]\"}],\"name\":\"commitBatch\",\"outputs\":[],\"stateMutability\":\"nonpayable\",\"type\":\"function\"},{\"inputs\":[{\"internalType\":\"uint64\",\"name\":\"batchId\",\"type\":\"uint64\"},{\"internalType\":\"bytes32\",\"name\":\"reasonHash\",\"type\":\"bytes32\"}],\"name\":\"disputeBatch\",\"outputs\":[],\"stateMutability\":\"nonpayable\",\"type\":\"function\"},{\"inputs\":[],\"name\":\"nextBatchId\",\"outputs\":[{\"internalType\":\"uint64\",\"name\":\"\",\"type\":\"uint64\"}],\"stateMutability\":\"view\",\"type\":\"function\"},{\"inputs\":[{\"internalType\":\"address\",\"name\":\"account\",\"type\":\"address\"}],\"name\":\"operatorOf\",\"outputs\":[{\"internalType\":\"bytes32\",\"name\":\"\",\"type\":\"bytes32\"}],\"stateMutability\":\"view\",\"type\":\"function\"},{\"inputs\":[{\"internalType\":\"bytes32\",\"name\":\"id\",\"type\":\"bytes32\"}],\"name\":\"operatorState\",\"outputs\":[{\"internalType\":\"address\",\"name\":\"account\",\"type\":\"address\"},{\"internalType\":\"int256\",\"name\":\"balance\",\"type\":\"int256\"}],\"stateMutability\":\"view\",\"type\":\"function\"},{\"inputs\":[{\"internalType\":\"uint64\",\"name\":\"batchId\",\"type\":\"uint64\"},{\"internalType\":\"bytes32\",\"name\":\"operator\",\"type\":\"bytes32\"}],\"name\":\"reconciliation\",\"outputs\":[{\"components\":[{\"internalType\":\"enumSettlement.Answer\",\"name\":\"answer\",\"type\":\"uint8\"},{\"internalType\":\"bytes32\",\"name\":\"reasonHash\",\"type\":\"bytes32\"}],\"internalType\":\"structSettlement.Reconciliation\",\"name\":\"\",\"type\":\"tuple\"}],\"stateMutability\":\"view\",\"type\":\"function\"},{\"inputs\":[{\"internalType\":\"string[]\",\"name\":\"terminalIds\",\"type\":\"string[]\"},{\"internalType\":\"string[]\",\"name\":\"stopIds\",\"type\":\"string[]\"},{\"internalType\":\"bytes32[]\",\"name\":\"publicKeys\",\"type\":\"bytes32[]\"},{\"internalType\":\"bytes[]\",\"name\":\"keyProofs\",\"type\":\"bytes[]\"}],\"name\":\"registerTerminals\",\"outputs\":[],\"stateMutability\":\"nonpayable\",\"type\":\"function\"},{\"inputs\":[{\"internalType\":\"bytes32\",\"name\":\"id\",\"type\":\"bytes32\"},{\"internalType\":\"address\",\"name\":\"account\",\"type\":\"address\"}],\"name\":\"replaceOperatorAccount\",\"outputs\":[],\"stateMutability\":\"nonpayable\",\"type\":\"function\"},{\"inputs\":[{\"internalType\":\"string\",\"name\":\"terminalId\",\"type\":\"string\"}],\"name\":\"revokeTerminal\",\"outputs\":[],\"stateMutability\":\"nonpayable\",\"type\":\"function\"},{\"inputs\":[{\"internalType\":\"address\",\"name\":\"account\",\"type\":\"address\"}],\"name\":\"setClearingHouse\",\"outputs\":[],\"stateMutability\":\"nonpayable\",\"type\":\"function\"},{\"inputs\":[{\"internalType\":\"string\",\"name\":\"terminalId\",\"type\":\"string\"}],\"name\":\"terminal\",\"outputs\":[{\"components\":[{\"internalType\":\"bytes32\",\"name\":\"operator\",\"type\":\"bytes32\"},{\"internalType\":\"bytes32\",\"name\":\"publicKey\",\"type\":\"bytes32\"},{\"internalType\":\"bytes32\",\"name\":\"stopHash\",\"type\":\"bytes32\"},{\"internalType\":\"uint64\",\"name\":\"registeredBlock\",\"type\":\"uint64\"},{\"internalType\":\"uint64\",\"name\":\"revokedBlock\",\"type\":\"uint64\"}],\"internalType\":\"structSettlement.TerminalInfo\",\"name\":\"\",\"type\":\"tuple\"}],\"stateMutability\":\"view\",\"type\":\"function\"},{\"inputs\":[{\"internalType\":\"uint64\",\"name\":\"batchId\",\"type\":\"uint64\"},{\"internalType\":\"bytes32\",\"name\":\"value\",\"type\":\"bytes32\"},{\"internalType\":\"bytes32[]\",\"name\":\"proof\",\"type\":\"bytes32[]\"}],\"name\":\"verify\",\"outputs\":[{\"internalType\":\"bool\",\"name\":\"\",\"type\":\"bool\"}],\"stateMutability\":\"view\",\"type\":\"function\"}]",
	ID:  "Settlement",
	Bin: "0x60a060405234801561001057600080fd5b50604051611eb3380380611eb383398101604081905261002f916100dc565b6001600160a01b03811661007b57604051631fff1b3b60e21b815260206004820152600e60248201526d636c656172696e6720686f75736560901b604482015260640160405180910390fd5b33608052600080546001600160a01b0319166001600160a01b03831690811782556040805192835260208301919091527fb619d7c6b2779fd2d877b0cabb9cb353366c6292719555a75eab65392bc6a1d2910160405180910390a15061010c565b6000602082840312156100ee57600080fd5b81516001600160a01b038116811461010557600080fd5b9392505050565b608051611d70610143600039600081816103a60152818161086101528181610c50015281816110de01526114100152611d706000f3fe608060405234801561001057600080fd5b50600436106101165760003560e01c80638462a7f8116100a2578063d9c52a3711610071578063d9c52a371461037b578063e6b411e01461038e578063f851a440146103a1578063fdca22f6146103c8578063ffa1ad74146103db57600080fd5b80638462a7f814610268578063857553cc14610288578063b855406f14610301578063d0460edc1461036857600080fd5b80633e746d1d116100e95780633e746d1d146101c857806342adedfa146101eb578063449323d8146101fe578063636f35d3146102115780636f9141451461024857600080fd5b80630af968001461011b5780630e4e9f211461014b57806327461eab146101605780632ef5a59514610173575b600080fd5b60005461012e906001600160a01b031681565b6040516001600160a01b0390911681526020015b60405180910390f35b61015e61015936600461189b565b6103e3565b005b61015e61016e366004611973565b610856565b6101a961018136600461199f565b6000908152600260205260409020546001600160a01b03811691600160a01b909104600b0b90565b604080516001600160a01b039093168352602083019190915201610142565b6101db6101d63660046119b8565b610a12565b6040519015158152602001610142565b61015e6101f9366004611a11565b610b0e565b61015e61020c366004611ae4565b610c45565b61023a61021f366004611ae4565b6001600160a01b031660009081526003602052604090205490565b604051908152602001610142565b61025b610256366004611aff565b610d9e565b6040516101429190611b3f565b610270610e1a565b6040516001600160401b039091168152602001610142565b61029b610296366004611b78565b610e3e565b6040516101429190600060a082019050825182526001600160401b0360208401511660208301526001600160401b0360408401511660408301526001600160401b0360608401511660608301526001600160401b03608084015116608083015292915050565b61031461030f366004611b93565b610f25565b6040516101429190600060a0820190508251825260208301516020830152604083015160408301526001600160401b0360608401511660608301526001600160401b03608084015116608083015292915050565b61015e610376366004611aff565b610ff3565b61015e610389366004611b78565b611088565b61015e61039c366004611973565b6110d3565b61012e7f000000000000000000000000000000000000000000000000000000000000000081565b61015e6103d6366004611b93565b6112d3565b61023a600381565b6000546001600160a01b031633146104155760405163d7378be960e01b81523360048201526024015b60405180910390fd5b6000546001600160401b03600160a01b9091048116908a161580159061044d5750806001600160401b03168a6001600160401b031611155b1561047657604051635f847b7760e01b81526001600160401b038b16600482015260240161040c565b610481816001611c1b565b6001600160401b03168a6001600160401b0316146104d1576104a4816001611c1b565b604051630ffbbbff60e21b81526001600160401b039182166004820152908b16602482015260440161040c565b8382146104fb576040516355c5b3e360e11b8152600481018590526024810183905260440161040c565b856001600160401b0316876001600160401b0316111561054157604051633e1996bf60e11b81526001600160401b0380891660048301528716602482015260440161040c565b600080546001600160401b03808d16600160a01b810267ffffffffffffffff60a01b199093169290921783556040805160a0810182528d81528c831660208083019182528d85168385019081528d86166060850190815243871660808601908152888a52600193849052988690209451855592519390910180549151925197518616600160c01b026001600160c01b03988716600160801b02989098166fffffffffffffffffffffffffffffffff938716600160401b026fffffffffffffffffffffffffffffffff19909316949096169390931717169290921793909317905590517f3319a8470b7a8c27d2f70604ef9fd81bfb8d7093d69a42f29a7d5dafb04d137a90610681908c908c908c908c908b909485526001600160401b03938416602086015291831660408501529091166060830152608082015260a00190565b60405180910390a26000805b858110156108485760008787838181106106a9576106a9611c3a565b9050602002013590506000821180156106c25750828111155b156106e35760405163d7a0183760e01b81526004810183905260240161040c565b6000818152600260205260409020805491935083916001600160a01b031661072157604051636af8685d60e11b81526004810183905260240161040c565b600087878581811061073557610735611c3a565b845461075693602090920291909101359150600160a01b9004600b0b611c50565b90506b7fffffffffffffffffffffff81138061077e57506b7fffffffffffffffffffffff1981125b1561079f57604051633ca96f1b60e01b81526004810184905260240161040c565b808260000160146101000a8154816bffffffffffffffffffffffff0219169083600b0b6bffffffffffffffffffffffff160217905550828f6001600160401b03167fb78cdbe285fb8390a7cd4c8166382bc17d60e894455b146215b8c12ea4c8e0858a8a8881811061081357610813611c3a565b9050602002013584604051610832929190918252602082015260400190565b60405180910390a350505080600101905061068d565b505050505050505050505050565b336001600160a01b037f000000000000000000000000000000000000000000000000000000000000000016146108a157604051630bd4212160e11b815233600482015260240161040c565b6000828152600260205260409020546001600160a01b0316806108da57604051636af8685d60e11b81526004810184905260240161040c565b6001600160a01b03821661092457604051631fff1b3b60e21b815260206004820152601060248201526f1bdc195c985d1bdc881858d8dbdd5b9d60821b604482015260640161040c565b61092d8261140e565b6001600160a01b0382166000908152600360205260409020541561098a576001600160a01b03821660008181526003602052604090819020549051630a80933d60e11b81526004810191909152602481019190915260440161040c565b6001600160a01b0381811660008181526003602081815260408084208490558884526002825280842080546001600160a01b03191696891696871790558584529181529181902087905580519283529082019290925284917fa58ccbee641939dac8b703adebf5a48369f4a4ff6644c1e7fc6df7cd5401e5e3910160405180910390a2505050565b60006001600160401b0385161580610a3f57506000546001600160401b03600160a01b9091048116908616115b15610a68576040516329323fff60e01b81526001600160401b038616600482015260240161040c565b600084604051602001610a7d91815260200190565b60408051601f198184030181528282528051602091820120908301520160405160208183030381529060405280519060200120905060005b83811015610ae957610adf82868684818110610ad357610ad3611c3a565b90506020020135611503565b9150600101610ab5565b506001600160401b038616600090815260016020526040902054149050949350505050565b6000610b18611521565b9050878614610b44576040516355c5b3e360e11b8152600481018990526024810187905260440161040c565b878414610b6e576040516355c5b3e360e11b8152600481018990526024810185905260440161040c565b878214610b98576040516355c5b3e360e11b8152600481018990526024810183905260440161040c565b60005b88811015610c3957610c31828b8b84818110610bb957610bb9611c3a565b9050602002810190610bcb9190611c78565b8b8b86818110610bdd57610bdd611c3a565b9050602002810190610bef9190611c78565b8b8b88818110610c0157610c01611c3a565b905060200201358a8a89818110610c1a57610c1a611c3a565b9050602002810190610c2c9190611c78565b611554565b600101610b9b565b50505050505050505050565b336001600160a01b037f00000000000000000000000000000000000000000000000000000000000000001614610c9057604051630bd4212160e11b815233600482015260240161040c565b6001600160a01b038116610cd857604051631fff1b3b60e21b815260206004820152600e60248201526d636c656172696e6720686f75736560901b604482015260640161040c565b6001600160a01b03811660009081526003602052604090205415610d35576001600160a01b03811660008181526003602052604090819020549051630a80933d60e11b81526004810191909152602481019190915260440161040c565b600054604080516001600160a01b03928316815291831660208301527fb619d7c6b2779fd2d877b0cabb9cb353366c6292719555a75eab65392bc6a1d2910160405180910390a1600080546001600160a01b0319166001600160a01b0392909216919091179055565b604080518082018252600080825260208083018290526001600160401b038616825260058152838220858352905282902082518084019093528054919291829060ff166002811115610df257610df2611b29565b6002811115610e0357610e03611b29565b815260200160018201548152505090505b92915050565b60008054610e3990600160a01b90046001600160401b03166001611c1b565b905090565b6040805160a0810182526000808252602082018190529181018290526060810182905260808101919091526001600160401b0382161580610e9457506000546001600160401b03600160a01b9091048116908316115b15610ebd576040516329323fff60e01b81526001600160401b038316600482015260240161040c565b506001600160401b03908116600090815260016020818152604092839020835160a0810185528154815292015480851691830191909152600160401b8104841692820192909252600160801b820483166060820152600160c01b909104909116608082015290565b6040805160a0810182526000808252602082018190529181018290526060810182905260808101919091526000600460008585604051610f66929190611cbe565b60408051918290039091208252602080830193909352908101600020815160a0810183528154808252600183015494820194909452600282015492810192909252600301546001600160401b038082166060840152600160401b9091041660808201529150610fec57838360405163633bf21f60e11b815260040161040c929190611cf7565b9392505050565b8061102f57604051631fff1b3b60e21b815260206004820152600b60248201526a0e4cac2e6dedc40d0c2e6d60ab1b604482015260640161040c565b600061103d83600284611731565b905080836001600160401b03167fc8e7437433167ea51dc2f201f8ec923ec8af27dedb7bf25b697d7aa71e7a96b78460405161107b91815260200190565b60405180910390a3505050565b600061109682600183611731565b905080826001600160401b03167f62de10d06439a9ec1a43f7bb1476248dabff601e2e18bab6885ac662eb1ea35e60405160405180910390a35050565b336001600160a01b037f0000000000000000000000000000000000000000000000000000000000000000161461111e57604051630bd4212160e11b815233600482015260240161040c565b8161115a57604051631fff1b3b60e21b815260206004820152600b60248201526a1bdc195c985d1bdc881a5960aa1b604482015260640161040c565b6001600160a01b0381166111a457604051631fff1b3b60e21b815260206004820152601060248201526f1bdc195c985d1bdc881858d8dbdd5b9d60821b604482015260640161040c565b6111ad8161140e565b6000828152600260205260409020546001600160a01b0316156112065760008281526002602052604090819020549051630a80933d60e11b8152600481018490526001600160a01b03909116602482015260440161040c565b6001600160a01b03811660009081526003602052604090205415611263576001600160a01b03811660008181526003602052604090819020549051630a80933d60e11b81526004810191909152602481019190915260440161040c565b600082815260026020908152604080832080546001600160a01b0319166001600160a01b03861690811790915580845260038352928190208590555191825283917f557b27423dbc5a83e84cdcb55ea0600352bfe0a0ee53a9ed667a2626b5d710ac910160405180910390a25050565b60006112dd611521565b9050600083836040516112f1929190611cbe565b6040805191829003909120600081815260046020529190912080549192509061133157848460405163633bf21f60e11b815260040161040c929190611cf7565b8054831461136657805460405163d498d34560e01b81526004810184905260248101919091526044810184905260640161040c565b6003810154600160401b90046001600160401b03161561139d5784846040516303facf9d60e61b815260040161040c929190611cf7565b6003810180546fffffffffffffffff00000000000000001916600160401b436001600160401b031602179055604051839083907fcecd637087f78696d5eae5e7a254742ac0c69fcc5d44b86f6242dfcd24c15568906113ff9089908990611cf7565b60405180910390a35050505050565b7f00000000000000000000000000000000000000000000000000000000000000006001600160a01b0316816001600160a01b03160361149057604051631fff1b3b60e21b815260206004820152601f60248201527f6f70657261746f72206163636f756e74206973207468652061646d696e277300604482015260640161040c565b6000546001600160a01b039081169082160361150057604051631fff1b3b60e21b815260206004820152602860248201527f6f70657261746f72206163636f756e742069732074686520636c656172696e6760448201526720686f757365277360c01b606482015260840161040c565b50565b600081831115611511579091905b5060009182526020526040902090565b336000908152600360205260409020548061155157604051633b63649d60e11b815233600482015260240161040c565b90565b600086900361159457604051631fff1b3b60e21b815260206004820152600b60248201526a1d195c9b5a5b985b081a5960aa1b604482015260640161040c565b60008490036115d057604051631fff1b3b60e21b81526020600482015260076024820152661cdd1bdc081a5960ca1b604482015260640161040c565b8261160b57604051631fff1b3b60e21b815260206004820152600a6024820152697075626c6963206b657960b01b604482015260640161040c565b6040811461164857604051631fff1b3b60e21b815260206004820152600960248201526835b2bc90383937b7b360b91b604482015260640161040c565b6000878760405161165a929190611cbe565b604080519182900390912060008181526004602052919091208054919250901561169a578888604051629f4de960e71b815260040161040c929190611cf7565b898155600181018590556040516116b49088908890611cbe565b604051908190038120600283015560038201805467ffffffffffffffff1916436001600160401b03161790558a9083907f2273ffebff22e90a3154054ef7075947073d6b90edcc5b061387a64cca2b3a4e9061171d908d908d908d908d908d908d908d90611d13565b60405180910390a350505050505050505050565b600061173b611521565b90506001600160401b038416158061176857506000546001600160401b03600160a01b9091048116908516115b15611791576040516329323fff60e01b81526001600160401b038516600482015260240161040c565b6001600160401b0384166000908152600560209081526040808320848452909152812090815460ff1660028111156117cb576117cb611b29565b146117fb57604051635f7bcaf560e01b81526001600160401b03861660048201526024810183905260440161040c565b80548490829060ff1916600183600281111561181957611819611b29565b0217905550821561182c57600181018390555b509392505050565b80356001600160401b038116811461184b57600080fd5b919050565b60008083601f84011261186257600080fd5b5081356001600160401b0381111561187957600080fd5b6020830191508360208260051b850101111561189457600080fd5b9250929050565b600080600080600080600080600060e08a8c0312156118b957600080fd5b6118c28a611834565b985060208a013597506118d760408b01611834565b96506118e560608b01611834565b95506118f360808b01611834565b945060a08a01356001600160401b0381111561190e57600080fd5b61191a8c828d01611850565b90955093505060c08a01356001600160401b0381111561193957600080fd5b6119458c828d01611850565b915080935050809150509295985092959850929598565b80356001600160a01b038116811461184b57600080fd5b6000806040838503121561198657600080fd5b823591506119966020840161195c565b90509250929050565b6000602082840312156119b157600080fd5b5035919050565b600080600080606085870312156119ce57600080fd5b6119d785611834565b93506020850135925060408501356001600160401b038111156119f957600080fd5b611a0587828801611850565b95989497509550505050565b6000806000806000806000806080898b031215611a2d57600080fd5b88356001600160401b03811115611a4357600080fd5b611a4f8b828c01611850565b90995097505060208901356001600160401b03811115611a6e57600080fd5b611a7a8b828c01611850565b90975095505060408901356001600160401b03811115611a9957600080fd5b611aa58b828c01611850565b90955093505060608901356001600160401b03811115611ac457600080fd5b611ad08b828c01611850565b999c989b5096995094979396929594505050565b600060208284031215611af657600080fd5b610fec8261195c565b60008060408385031215611b1257600080fd5b611b1b83611834565b946020939093013593505050565b634e487b7160e01b600052602160045260246000fd5b8151604082019060038110611b6457634e487b7160e01b600052602160045260246000fd5b808352506020830151602083015292915050565b600060208284031215611b8a57600080fd5b610fec82611834565b60008060208385031215611ba657600080fd5b82356001600160401b03811115611bbc57600080fd5b8301601f81018513611bcd57600080fd5b80356001600160401b03811115611be357600080fd5b856020828401011115611bf557600080fd5b6020919091019590945092505050565b634e487b7160e01b600052601160045260246000fd5b6001600160401b038181168382160190811115610e1457610e14611c05565b634e487b7160e01b600052603260045260246000fd5b8082018281126000831280158216821582161715611c7057611c70611c05565b505092915050565b6000808335601e19843603018112611c8f57600080fd5b8301803591506001600160401b03821115611ca957600080fd5b60200191503681900382131561189457600080fd5b8183823760009101908152919050565b81835281816020850137506000828201602090810191909152601f909101601f19169091010190565b602081526000611d0b602083018486611cce565b949350505050565b608081526000611d2760808301898b611cce565b8281036020840152611d3a81888a611cce565b90508560408401528281036060840152611d55818587611cce565b9a995050505050505050505056fea164736f6c6343000825000a",
}

// Settlement is an auto generated Go binding around an Ethereum contract.
type Settlement struct {
	abi abi.ABI
}

// GetABI returns the ABI associated with this contract binding.
func (c *Settlement) GetABI() abi.ABI {
	return c.abi
}

// NewSettlement creates a new instance of Settlement.
func NewSettlement() *Settlement {
	parsed, err := SettlementMetaData.ParseABI()
	if err != nil {
		panic(errors.New("invalid ABI: " + err.Error()))
	}
	return &Settlement{abi: *parsed}
}

// Instance creates a wrapper for a deployed contract instance at the given address.
// Use this to create the instance object passed to abigen v2 library functions Call, Transact, etc.
func (c *Settlement) Instance(backend bind.ContractBackend, addr common.Address) *bind.BoundContract {
	return bind.NewBoundContract(addr, c.abi, backend, backend, backend)
}

// PackConstructor is the Go binding used to pack the parameters required for
// contract deployment.
//
// Solidity: constructor(address clearingHouse_) returns()
func (settlement *Settlement) PackConstructor(clearingHouse_ common.Address) []byte {
	enc, err := settlement.abi.Pack("", clearingHouse_)
	if err != nil {
		panic(err)
	}
	return enc
}

// PackVERSION is the Go binding used to pack the parameters required for calling
// the contract method with ID 0xffa1ad74.  This method will panic if any
// invalid/nil inputs are passed.
//
// Solidity: function VERSION() view returns(uint256)
func (settlement *Settlement) PackVERSION() []byte {
	enc, err := settlement.abi.Pack("VERSION")
	if err != nil {
		panic(err)
	}
	return enc
}

// TryPackVERSION is the Go binding used to pack the parameters required for calling
// the contract method with ID 0xffa1ad74.  This method will return an error
// if any inputs are invalid/nil.
//
// Solidity: function VERSION() view returns(uint256)
func (settlement *Settlement) TryPackVERSION() ([]byte, error) {
	return settlement.abi.Pack("VERSION")
}

// UnpackVERSION is the Go binding that unpacks the parameters returned
// from invoking the contract method with ID 0xffa1ad74.
//
// Solidity: function VERSION() view returns(uint256)
func (settlement *Settlement) UnpackVERSION(data []byte) (*big.Int, error) {
	out, err := settlement.abi.Unpack("VERSION", data)
	if err != nil {
		return new(big.Int), err
	}
	out0 := abi.ConvertType(out[0], new(big.Int)).(*big.Int)
	return out0, nil
}

// PackAcknowledgeBatch is the Go binding used to pack the parameters required for calling
// the contract method with ID 0xd9c52a37.  This method will panic if any
// invalid/nil inputs are passed.
//
// Solidity: function acknowledgeBatch(uint64 batchId) returns()
func (settlement *Settlement) PackAcknowledgeBatch(batchId uint64) []byte {
	enc, err := settlement.abi.Pack("acknowledgeBatch", batchId)
	if err != nil {
		panic(err)
	}
	return enc
}

// TryPackAcknowledgeBatch is the Go binding used to pack the parameters required for calling
// the contract method with ID 0xd9c52a37.  This method will return an error
// if any inputs are invalid/nil.
//
// Solidity: function acknowledgeBatch(uint64 batchId) returns()
func (settlement *Settlement) TryPackAcknowledgeBatch(batchId uint64) ([]byte, error) {
	return settlement.abi.Pack("acknowledgeBatch", batchId)
}

// PackAdmin is the Go binding used to pack the parameters required for calling
// the contract method with ID 0xf851a440.  This method will panic if any
// invalid/nil inputs are passed.
//
// Solidity: function admin() view returns(address)
func (settlement *Settlement) PackAdmin() []byte {
	enc, err := settlement.abi.Pack("admin")
	if err != nil {
		panic(err)
	}
	return enc
}

// TryPackAdmin is the Go binding used to pack the parameters required for calling
// the contract method with ID 0xf851a440.  This method will return an error
// if any inputs are invalid/nil.
//
// Solidity: function admin() view returns(address)
func (settlement *Settlement) TryPackAdmin() ([]byte, error) {
	return settlement.abi.Pack("admin")
}

// UnpackAdmin is the Go binding that unpacks the parameters returned
// from invoking the contract method with ID 0xf851a440.
//
// Solidity: function admin() view returns(address)
func (settlement *Settlement) UnpackAdmin(data []byte) (common.Address, error) {
	out, err := settlement.abi.Unpack("admin", data)
	if err != nil {
		return *new(common.Address), err
	}
	out0 := *abi.ConvertType(out[0], new(common.Address)).(*common.Address)
	return out0, nil
}

// PackAdmitOperator is the Go binding used to pack the parameters required for calling
// the contract method with ID 0xe6b411e0.  This method will panic if any
// invalid/nil inputs are passed.
//
// Solidity: function admitOperator(bytes32 id, address account) returns()
func (settlement *Settlement) PackAdmitOperator(id [32]byte, account common.Address) []byte {
	enc, err := settlement.abi.Pack("admitOperator", id, account)
	if err != nil {
		panic(err)
	}
	return enc
}

// TryPackAdmitOperator is the Go binding used to pack the parameters required for calling
// the contract method with ID 0xe6b411e0.  This method will return an error
// if any inputs are invalid/nil.
//
// Solidity: function admitOperator(bytes32 id, address account) returns()
func (settlement *Settlement) TryPackAdmitOperator(id [32]byte, account common.Address) ([]byte, error) {
	return settlement.abi.Pack("admitOperator", id, account)
}

// PackBatch is the Go binding used to pack the parameters required for calling
// the contract method with ID 0x857553cc.  This method will panic if any
// invalid/nil inputs are passed.
//
// Solidity: function batch(uint64 id) view returns((bytes32,uint64,uint64,uint64,uint64))
func (settlement *Settlement) PackBatch(id uint64) []byte {
	enc, err := settlement.abi.Pack("batch", id)
	if err != nil {
		panic(err)
	}
	return enc
}

// TryPackBatch is the Go binding used to pack the parameters required for calling
// the contract method with ID 0x857553cc.  This method will return an error
// if any inputs are invalid/nil.
//
// Solidity: function batch(uint64 id) view returns((bytes32,uint64,uint64,uint64,uint64))
func (settlement *Settlement) TryPackBatch(id uint64) ([]byte, error) {
	return settlement.abi.Pack("batch", id)
}

// UnpackBatch is the Go binding that unpacks the parameters returned
// from invoking the contract method with ID 0x857553cc.
//
// Solidity: function batch(uint64 id) view returns((bytes32,uint64,uint64,uint64,uint64))
func (settlement *Settlement) UnpackBatch(data []byte) (SettlementBatchInfo, error) {
	out, err := settlement.abi.Unpack("batch", data)
	if err != nil {
		return *new(SettlementBatchInfo), err
	}
	out0 := *abi.ConvertType(out[0], new(SettlementBatchInfo)).(*SettlementBatchInfo)
	return out0, nil
}

// PackClearingHouse is the Go binding used to pack the parameters required for calling
// the contract method with ID 0x0af96800.  This method will panic if any
// invalid/nil inputs are passed.
//
// Solidity: function clearingHouse() view returns(address)
func (settlement *Settlement) PackClearingHouse() []byte {
	enc, err := settlement.abi.Pack("clearingHouse")
	if err != nil {
		panic(err)
	}
	return enc
}

// TryPackClearingHouse is the Go binding used to pack the parameters required for calling
// the contract method with ID 0x0af96800.  This method will return an error
// if any inputs are invalid/nil.
//
// Solidity: function clearingHouse() view returns(address)
func (settlement *Settlement) TryPackClearingHouse() ([]byte, error) {
	return settlement.abi.Pack("clearingHouse")
}

// UnpackClearingHouse is the Go binding that unpacks the parameters returned
// from invoking the contract method with ID 0x0af96800.
//
// Solidity: function clearingHouse() view returns(address)
func (settlement *Settlement) UnpackClearingHouse(data []byte) (common.Address, error) {
	out, err := settlement.abi.Unpack("clearingHouse", data)
	if err != nil {
		return *new(common.Address), err
	}
	out0 := *abi.ConvertType(out[0], new(common.Address)).(*common.Address)
	return out0, nil
}

// PackCommitBatch is the Go binding used to pack the parameters required for calling
// the contract method with ID 0x0e4e9f21.  This method will panic if any
// invalid/nil inputs are passed.
//
// Solidity: function commitBatch(uint64 id, bytes32 root, uint64 eventCount, uint64 periodStart, uint64 periodEnd, bytes32[] operators, int256[] nets) returns()
func (settlement *Settlement) PackCommitBatch(id uint64, root [32]byte, eventCount uint64, periodStart uint64, periodEnd uint64, operators [][32]byte, nets []*big.Int) []byte {
	enc, err := settlement.abi.Pack("commitBatch", id, root, eventCount, periodStart, periodEnd, operators, nets)
	if err != nil {
		panic(err)
	}
	return enc
}

// TryPackCommitBatch is the Go binding used to pack the parameters required for calling
// the contract method with ID 0x0e4e9f21.  This method will return an error
// if any inputs are invalid/nil.
//
// Solidity: function commitBatch(uint64 id, bytes32 root, uint64 eventCount, uint64 periodStart, uint64 periodEnd, bytes32[] operators, int256[] nets) returns()
func (settlement *Settlement) TryPackCommitBatch(id uint64, root [32]byte, eventCount uint64, periodStart uint64, periodEnd uint64, operators [][32]byte, nets []*big.Int) ([]byte, error) {
	return settlement.abi.Pack("commitBatch", id, root, eventCount, periodStart, periodEnd, operators, nets)
}

// PackDisputeBatch is the Go binding used to pack the parameters required for calling
// the contract method with ID 0xd0460edc.  This method will panic if any
// invalid/nil inputs are passed.
//
// Solidity: function disputeBatch(uint64 batchId, bytes32 reasonHash) returns()
func (settlement *Settlement) PackDisputeBatch(batchId uint64, reasonHash [32]byte) []byte {
	enc, err := settlement.abi.Pack("disputeBatch", batchId, reasonHash)
	if err != nil {
		panic(err)
	}
	return enc
}

// TryPackDisputeBatch is the Go binding used to pack the parameters required for calling
// the contract method with ID 0xd0460edc.  This method will return an error
// if any inputs are invalid/nil.
//
// Solidity: function disputeBatch(uint64 batchId, bytes32 reasonHash) returns()
func (settlement *Settlement) TryPackDisputeBatch(batchId uint64, reasonHash [32]byte) ([]byte, error) {
	return settlement.abi.Pack("disputeBatch", batchId, reasonHash)
}

// PackNextBatchId is the Go binding used to pack the parameters required for calling
// the contract method with ID 0x8462a7f8.  This method will panic if any
// invalid/nil inputs are passed.
//
// Solidity: function nextBatchId() view returns(uint64)
func (settlement *Settlement) PackNextBatchId() []byte {
	enc, err := settlement.abi.Pack("nextBatchId")
	if err != nil {
		panic(err)
	}
	return enc
}

// TryPackNextBatchId is the Go binding used to pack the parameters required for calling
// the contract method with ID 0x8462a7f8.  This method will return an error
// if any inputs are invalid/nil.
//
// Solidity: function nextBatchId() view returns(uint64)
func (settlement *Settlement) TryPackNextBatchId() ([]byte, error) {
	return settlement.abi.Pack("nextBatchId")
}

// UnpackNextBatchId is the Go binding that unpacks the parameters returned
// from invoking the contract method with ID 0x8462a7f8.
//
// Solidity: function nextBatchId() view returns(uint64)
func (settlement *Settlement) UnpackNextBatchId(data []byte) (uint64, error) {
	out, err := settlement.abi.Unpack("nextBatchId", data)
	if err != nil {
		return *new(uint64), err
	}
	out0 := *abi.ConvertType(out[0], new(uint64)).(*uint64)
	return out0, nil
}

// PackOperatorOf is the Go binding used to pack the parameters required for calling
// the contract method with ID 0x636f35d3.  This method will panic if any
// invalid/nil inputs are passed.
//
// Solidity: function operatorOf(address account) view returns(bytes32)
func (settlement *Settlement) PackOperatorOf(account common.Address) []byte {
	enc, err := settlement.abi.Pack("operatorOf", account)
	if err != nil {
		panic(err)
	}
	return enc
}

// TryPackOperatorOf is the Go binding used to pack the parameters required for calling
// the contract method with ID 0x636f35d3.  This method will return an error
// if any inputs are invalid/nil.
//
// Solidity: function operatorOf(address account) view returns(bytes32)
func (settlement *Settlement) TryPackOperatorOf(account common.Address) ([]byte, error) {
	return settlement.abi.Pack("operatorOf", account)
}

// UnpackOperatorOf is the Go binding that unpacks the parameters returned
// from invoking the contract method with ID 0x636f35d3.
//
// Solidity: function operatorOf(address account) view returns(bytes32)
func (settlement *Settlement) UnpackOperatorOf(data []byte) ([32]byte, error) {
	out, err := settlement.abi.Unpack("operatorOf", data)
	if err != nil {
		return *new([32]byte), err
	}
	out0 := *abi.ConvertType(out[0], new([32]byte)).(*[32]byte)
	return out0, nil
}

// PackOperatorState is the Go binding used to pack the parameters required for calling
// the contract method with ID 0x2ef5a595.  This method will panic if any
// invalid/nil inputs are passed.
//
// Solidity: function operatorState(bytes32 id) view returns(address account, int256 balance)
func (settlement *Settlement) PackOperatorState(id [32]byte) []byte {
	enc, err := settlement.abi.Pack("operatorState", id)
	if err != nil {
		panic(err)
	}
	return enc
}

// TryPackOperatorState is the Go binding used to pack the parameters required for calling
// the contract method with ID 0x2ef5a595.  This method will return an error
// if any inputs are invalid/nil.
//
// Solidity: function operatorState(bytes32 id) view returns(address account, int256 balance)
func (settlement *Settlement) TryPackOperatorState(id [32]byte) ([]byte, error) {
	return settlement.abi.Pack("operatorState", id)
}

// OperatorStateOutput serves as a container for the return parameters of contract
// method OperatorState.
type OperatorStateOutput struct {
	Account common.Address
	Balance *big.Int
}

// UnpackOperatorState is the Go binding that unpacks the parameters returned
// from invoking the contract method with ID 0x2ef5a595.
//
// Solidity: function operatorState(bytes32 id) view returns(address account, int256 balance)
func (settlement *Settlement) UnpackOperatorState(data []byte) (OperatorStateOutput, error) {
	out, err := settlement.abi.Unpack("operatorState", data)
	outstruct := new(OperatorStateOutput)
	if err != nil {
		return *outstruct, err
	}
	outstruct.Account = *abi.ConvertType(out[0], new(common.Address)).(*common.Address)
	outstruct.Balance = abi.ConvertType(out[1], new(big.Int)).(*big.Int)
	return *outstruct, nil
}

// PackReconciliation is the Go binding used to pack the parameters required for calling
// the contract method with ID 0x6f914145.  This method will panic if any
// invalid/nil inputs are passed.
//
// Solidity: function reconciliation(uint64 batchId, bytes32 operator) view returns((uint8,bytes32))
func (settlement *Settlement) PackReconciliation(batchId uint64, operator [32]byte) []byte {
	enc, err := settlement.abi.Pack("reconciliation", batchId, operator)
	if err != nil {
		panic(err)
	}
	return enc
}

// TryPackReconciliation is the Go binding used to pack the parameters required for calling
// the contract method with ID 0x6f914145.  This method will return an error
// if any inputs are invalid/nil.
//
// Solidity: function reconciliation(uint64 batchId, bytes32 operator) view returns((uint8,bytes32))
func (settlement *Settlement) TryPackReconciliation(batchId uint64, operator [32]byte) ([]byte, error) {
	return settlement.abi.Pack("reconciliation", batchId, operator)
}

// UnpackReconciliation is the Go binding that unpacks the parameters returned
// from invoking the contract method with ID 0x6f914145.
//
// Solidity: function reconciliation(uint64 batchId, bytes32 operator) view returns((uint8,bytes32))
func (settlement *Settlement) UnpackReconciliation(data []byte) (SettlementReconciliation, error) {
	out, err := settlement.abi.Unpack("reconciliation", data)
	if err != nil {
		return *new(SettlementReconciliation), err
	}
	out0 := *abi.ConvertType(out[0], new(SettlementReconciliation)).(*SettlementReconciliation)
	return out0, nil
}

// PackRegisterTerminals is the Go binding used to pack the parameters required for calling
// the contract method with ID 0x42adedfa.  This method will panic if any
// invalid/nil inputs are passed.
//
// Solidity: function registerTerminals(string[] terminalIds, string[] stopIds, bytes32[] publicKeys, bytes[] keyProofs) returns()
func (settlement *Settlement) PackRegisterTerminals(terminalIds []string, stopIds []string, publicKeys [][32]byte, keyProofs [][]byte) []byte {
	enc, err := settlement.abi.Pack("registerTerminals", terminalIds, stopIds, publicKeys, keyProofs)
	if err != nil {
		panic(err)
	}
	return enc
}

// TryPackRegisterTerminals is the Go binding used to pack the parameters required for calling
// the contract method with ID 0x42adedfa.  This method will return an error
// if any inputs are invalid/nil.
//
// Solidity: function registerTerminals(string[] terminalIds, string[] stopIds, bytes32[] publicKeys, bytes[] keyProofs) returns()
func (settlement *Settlement) TryPackRegisterTerminals(terminalIds []string, stopIds []string, publicKeys [][32]byte, keyProofs [][]byte) ([]byte, error) {
	return settlement.abi.Pack("registerTerminals", terminalIds, stopIds, publicKeys, keyProofs)
}

// PackReplaceOperatorAccount is the Go binding used to pack the parameters required for calling
// the contract method with ID 0x27461eab.  This method will panic if any
// invalid/nil inputs are passed.
//
// Solidity: function replaceOperatorAccount(bytes32 id, address account) returns()
func (settlement *Settlement) PackReplaceOperatorAccount(id [32]byte, account common.Address) []byte {
	enc, err := settlement.abi.Pack("replaceOperatorAccount", id, account)
	if err != nil {
		panic(err)
	}
	return enc
}

// TryPackReplaceOperatorAccount is the Go binding used to pack the parameters required for calling
// the contract method with ID 0x27461eab.  This method will return an error
// if any inputs are invalid/nil.
//
// Solidity: function replaceOperatorAccount(bytes32 id, address account) returns()
func (settlement *Settlement) TryPackReplaceOperatorAccount(id [32]byte, account common.Address) ([]byte, error) {
	return settlement.abi.Pack("replaceOperatorAccount", id, account)
}

// PackRevokeTerminal is the Go binding used to pack the parameters required for calling
// the contract method with ID 0xfdca22f6.  This method will panic if any
// invalid/nil inputs are passed.
//
// Solidity: function revokeTerminal(string terminalId) returns()
func (settlement *Settlement) PackRevokeTerminal(terminalId string) []byte {
	enc, err := settlement.abi.Pack("revokeTerminal", terminalId)
	if err != nil {
		panic(err)
	}
	return enc
}

// TryPackRevokeTerminal is the Go binding used to pack the parameters required for calling
// the contract method with ID 0xfdca22f6.  This method will return an error
// if any inputs are invalid/nil.
//
// Solidity: function revokeTerminal(string terminalId) returns()
func (settlement *Settlement) TryPackRevokeTerminal(terminalId string) ([]byte, error) {
	return settlement.abi.Pack("revokeTerminal", terminalId)
}

// PackSetClearingHouse is the Go binding used to pack the parameters required for calling
// the contract method with ID 0x449323d8.  This method will panic if any
// invalid/nil inputs are passed.
//
// Solidity: function setClearingHouse(address account) returns()
func (settlement *Settlement) PackSetClearingHouse(account common.Address) []byte {
	enc, err := settlement.abi.Pack("setClearingHouse", account)
	if err != nil {
		panic(err)
	}
	return enc
}

// TryPackSetClearingHouse is the Go binding used to pack the parameters required for calling
// the contract method with ID 0x449323d8.  This method will return an error
// if any inputs are invalid/nil.
//
// Solidity: function setClearingHouse(address account) returns()
func (settlement *Settlement) TryPackSetClearingHouse(account common.Address) ([]byte, error) {
	return settlement.abi.Pack("setClearingHouse", account)
}

// PackTerminal is the Go binding used to pack the parameters required for calling
// the contract method with ID 0xb855406f.  This method will panic if any
// invalid/nil inputs are passed.
//
// Solidity: function terminal(string terminalId) view returns((bytes32,bytes32,bytes32,uint64,uint64))
func (settlement *Settlement) PackTerminal(terminalId string) []byte {
	enc, err := settlement.abi.Pack("terminal", terminalId)
	if err != nil {
		panic(err)
	}
	return enc
}

// TryPackTerminal is the Go binding used to pack the parameters required for calling
// the contract method with ID 0xb855406f.  This method will return an error
// if any inputs are invalid/nil.
//
// Solidity: function terminal(string terminalId) view returns((bytes32,bytes32,bytes32,uint64,uint64))
func (settlement *Settlement) TryPackTerminal(terminalId string) ([]byte, error) {
	return settlement.abi.Pack("terminal", terminalId)
}

// UnpackTerminal is the Go binding that unpacks the parameters returned
// from invoking the contract method with ID 0xb855406f.
//
// Solidity: function terminal(string terminalId) view returns((bytes32,bytes32,bytes32,uint64,uint64))
func (settlement *Settlement) UnpackTerminal(data []byte) (SettlementTerminalInfo, error) {
	out, err := settlement.abi.Unpack("terminal", data)
	if err != nil {
		return *new(SettlementTerminalInfo), err
	}
	out0 := *abi.ConvertType(out[0], new(SettlementTerminalInfo)).(*SettlementTerminalInfo)
	return out0, nil
}

// PackVerify is the Go binding used to pack the parameters required for calling
// the contract method with ID 0x3e746d1d.  This method will panic if any
// invalid/nil inputs are passed.
//
// Solidity: function verify(uint64 batchId, bytes32 value, bytes32[] proof) view returns(bool)
func (settlement *Settlement) PackVerify(batchId uint64, value [32]byte, proof [][32]byte) []byte {
	enc, err := settlement.abi.Pack("verify", batchId, value, proof)
	if err != nil {
		panic(err)
	}
	return enc
}

// TryPackVerify is the Go binding used to pack the parameters required for calling
// the contract method with ID 0x3e746d1d.  This method will return an error
// if any inputs are invalid/nil.
//
// Solidity: function verify(uint64 batchId, bytes32 value, bytes32[] proof) view returns(bool)
func (settlement *Settlement) TryPackVerify(batchId uint64, value [32]byte, proof [][32]byte) ([]byte, error) {
	return settlement.abi.Pack("verify", batchId, value, proof)
}

// UnpackVerify is the Go binding that unpacks the parameters returned
// from invoking the contract method with ID 0x3e746d1d.
//
// Solidity: function verify(uint64 batchId, bytes32 value, bytes32[] proof) view returns(bool)
func (settlement *Settlement) UnpackVerify(data []byte) (bool, error) {
	out, err := settlement.abi.Unpack("verify", data)
	if err != nil {
		return *new(bool), err
	}
	out0 := *abi.ConvertType(out[0], new(bool)).(*bool)
	return out0, nil
}

// SettlementBatchAcknowledged represents a BatchAcknowledged event raised by the Settlement contract.
type SettlementBatchAcknowledged struct {
	BatchId  uint64
	Operator [32]byte
	Raw      *types.Log // Blockchain specific contextual infos
}

const SettlementBatchAcknowledgedEventName = "BatchAcknowledged"

// ContractEventName returns the user-defined event name.
func (SettlementBatchAcknowledged) ContractEventName() string {
	return SettlementBatchAcknowledgedEventName
}

// UnpackBatchAcknowledgedEvent is the Go binding that unpacks the event data emitted
// by contract.
//
// Solidity: event BatchAcknowledged(uint64 indexed batchId, bytes32 indexed operator)
func (settlement *Settlement) UnpackBatchAcknowledgedEvent(log *types.Log) (*SettlementBatchAcknowledged, error) {
	event := "BatchAcknowledged"
	if len(log.Topics) == 0 {
		return nil, bind.ErrNoEventSignature
	}
	if log.Topics[0] != settlement.abi.Events[event].ID {
		return nil, bind.ErrEventSignatureMismatch
	}
	out := new(SettlementBatchAcknowledged)
	if len(log.Data) > 0 {
		if err := settlement.abi.UnpackIntoInterface(out, event, log.Data); err != nil {
			return nil, err
		}
	}
	var indexed abi.Arguments
	for _, arg := range settlement.abi.Events[event].Inputs {
		if arg.Indexed {
			indexed = append(indexed, arg)
		}
	}
	if err := abi.ParseTopics(out, indexed, log.Topics[1:]); err != nil {
		return nil, err
	}
	out.Raw = log
	return out, nil
}

// SettlementBatchCommitted represents a BatchCommitted event raised by the Settlement contract.
type SettlementBatchCommitted struct {
	BatchId       uint64
	Root          [32]byte
	EventCount    uint64
	PeriodStart   uint64
	PeriodEnd     uint64
	OperatorCount *big.Int
	Raw           *types.Log // Blockchain specific contextual infos
}

const SettlementBatchCommittedEventName = "BatchCommitted"

// ContractEventName returns the user-defined event name.
func (SettlementBatchCommitted) ContractEventName() string {
	return SettlementBatchCommittedEventName
}

// UnpackBatchCommittedEvent is the Go binding that unpacks the event data emitted
// by contract.
//
// Solidity: event BatchCommitted(uint64 indexed batchId, bytes32 root, uint64 eventCount, uint64 periodStart, uint64 periodEnd, uint256 operatorCount)
func (settlement *Settlement) UnpackBatchCommittedEvent(log *types.Log) (*SettlementBatchCommitted, error) {
	event := "BatchCommitted"
	if len(log.Topics) == 0 {
		return nil, bind.ErrNoEventSignature
	}
	if log.Topics[0] != settlement.abi.Events[event].ID {
		return nil, bind.ErrEventSignatureMismatch
	}
	out := new(SettlementBatchCommitted)
	if len(log.Data) > 0 {
		if err := settlement.abi.UnpackIntoInterface(out, event, log.Data); err != nil {
			return nil, err
		}
	}
	var indexed abi.Arguments
	for _, arg := range settlement.abi.Events[event].Inputs {
		if arg.Indexed {
			indexed = append(indexed, arg)
		}
	}
	if err := abi.ParseTopics(out, indexed, log.Topics[1:]); err != nil {
		return nil, err
	}
	out.Raw = log
	return out, nil
}

// SettlementBatchDisputed represents a BatchDisputed event raised by the Settlement contract.
type SettlementBatchDisputed struct {
	BatchId    uint64
	Operator   [32]byte
	ReasonHash [32]byte
	Raw        *types.Log // Blockchain specific contextual infos
}

const SettlementBatchDisputedEventName = "BatchDisputed"

// ContractEventName returns the user-defined event name.
func (SettlementBatchDisputed) ContractEventName() string {
	return SettlementBatchDisputedEventName
}

// UnpackBatchDisputedEvent is the Go binding that unpacks the event data emitted
// by contract.
//
// Solidity: event BatchDisputed(uint64 indexed batchId, bytes32 indexed operator, bytes32 reasonHash)
func (settlement *Settlement) UnpackBatchDisputedEvent(log *types.Log) (*SettlementBatchDisputed, error) {
	event := "BatchDisputed"
	if len(log.Topics) == 0 {
		return nil, bind.ErrNoEventSignature
	}
	if log.Topics[0] != settlement.abi.Events[event].ID {
		return nil, bind.ErrEventSignatureMismatch
	}
	out := new(SettlementBatchDisputed)
	if len(log.Data) > 0 {
		if err := settlement.abi.UnpackIntoInterface(out, event, log.Data); err != nil {
			return nil, err
		}
	}
	var indexed abi.Arguments
	for _, arg := range settlement.abi.Events[event].Inputs {
		if arg.Indexed {
			indexed = append(indexed, arg)
		}
	}
	if err := abi.ParseTopics(out, indexed, log.Topics[1:]); err != nil {
		return nil, err
	}
	out.Raw = log
	return out, nil
}

// SettlementClearingHouseChanged represents a ClearingHouseChanged event raised by the Settlement contract.
type SettlementClearingHouseChanged struct {
	Previous common.Address
	Current  common.Address
	Raw      *types.Log // Blockchain specific contextual infos
}

const SettlementClearingHouseChangedEventName = "ClearingHouseChanged"

// ContractEventName returns the user-defined event name.
func (SettlementClearingHouseChanged) ContractEventName() string {
	return SettlementClearingHouseChangedEventName
}

// UnpackClearingHouseChangedEvent is the Go binding that unpacks the event data emitted
// by contract.
//
// Solidity: event ClearingHouseChanged(address previous, address current)
func (settlement *Settlement) UnpackClearingHouseChangedEvent(log *types.Log) (*SettlementClearingHouseChanged, error) {
	event := "ClearingHouseChanged"
	if len(log.Topics) == 0 {
		return nil, bind.ErrNoEventSignature
	}
	if log.Topics[0] != settlement.abi.Events[event].ID {
		return nil, bind.ErrEventSignatureMismatch
	}
	out := new(SettlementClearingHouseChanged)
	if len(log.Data) > 0 {
		if err := settlement.abi.UnpackIntoInterface(out, event, log.Data); err != nil {
			return nil, err
		}
	}
	var indexed abi.Arguments
	for _, arg := range settlement.abi.Events[event].Inputs {
		if arg.Indexed {
			indexed = append(indexed, arg)
		}
	}
	if err := abi.ParseTopics(out, indexed, log.Topics[1:]); err != nil {
		return nil, err
	}
	out.Raw = log
	return out, nil
}

// SettlementOperatorAccountReplaced represents a OperatorAccountReplaced event raised by the Settlement contract.
type SettlementOperatorAccountReplaced struct {
	Operator [32]byte
	Previous common.Address
	Account  common.Address
	Raw      *types.Log // Blockchain specific contextual infos
}

const SettlementOperatorAccountReplacedEventName = "OperatorAccountReplaced"

// ContractEventName returns the user-defined event name.
func (SettlementOperatorAccountReplaced) ContractEventName() string {
	return SettlementOperatorAccountReplacedEventName
}

// UnpackOperatorAccountReplacedEvent is the Go binding that unpacks the event data emitted
// by contract.
//
// Solidity: event OperatorAccountReplaced(bytes32 indexed operator, address previous, address account)
func (settlement *Settlement) UnpackOperatorAccountReplacedEvent(log *types.Log) (*SettlementOperatorAccountReplaced, error) {
	event := "OperatorAccountReplaced"
	if len(log.Topics) == 0 {
		return nil, bind.ErrNoEventSignature
	}
	if log.Topics[0] != settlement.abi.Events[event].ID {
		return nil, bind.ErrEventSignatureMismatch
	}
	out := new(SettlementOperatorAccountReplaced)
	if len(log.Data) > 0 {
		if err := settlement.abi.UnpackIntoInterface(out, event, log.Data); err != nil {
			return nil, err
		}
	}
	var indexed abi.Arguments
	for _, arg := range settlement.abi.Events[event].Inputs {
		if arg.Indexed {
			indexed = append(indexed, arg)
		}
	}
	if err := abi.ParseTopics(out, indexed, log.Topics[1:]); err != nil {
		return nil, err
	}
	out.Raw = log
	return out, nil
}

// SettlementOperatorAdmitted represents a OperatorAdmitted event raised by the Settlement contract.
type SettlementOperatorAdmitted struct {
	Operator [32]byte
	Account  common.Address
	Raw      *types.Log // Blockchain specific contextual infos
}

const SettlementOperatorAdmittedEventName = "OperatorAdmitted"

// ContractEventName returns the user-defined event name.
func (SettlementOperatorAdmitted) ContractEventName() string {
	return SettlementOperatorAdmittedEventName
}

// UnpackOperatorAdmittedEvent is the Go binding that unpacks the event data emitted
// by contract.
//
// Solidity: event OperatorAdmitted(bytes32 indexed operator, address account)
func (settlement *Settlement) UnpackOperatorAdmittedEvent(log *types.Log) (*SettlementOperatorAdmitted, error) {
	event := "OperatorAdmitted"
	if len(log.Topics) == 0 {
		return nil, bind.ErrNoEventSignature
	}
	if log.Topics[0] != settlement.abi.Events[event].ID {
		return nil, bind.ErrEventSignatureMismatch
	}
	out := new(SettlementOperatorAdmitted)
	if len(log.Data) > 0 {
		if err := settlement.abi.UnpackIntoInterface(out, event, log.Data); err != nil {
			return nil, err
		}
	}
	var indexed abi.Arguments
	for _, arg := range settlement.abi.Events[event].Inputs {
		if arg.Indexed {
			indexed = append(indexed, arg)
		}
	}
	if err := abi.ParseTopics(out, indexed, log.Topics[1:]); err != nil {
		return nil, err
	}
	out.Raw = log
	return out, nil
}

// SettlementOperatorSettled represents a OperatorSettled event raised by the Settlement contract.
type SettlementOperatorSettled struct {
	BatchId  uint64
	Operator [32]byte
	Net      *big.Int
	Balance  *big.Int
	Raw      *types.Log // Blockchain specific contextual infos
}

const SettlementOperatorSettledEventName = "OperatorSettled"

// ContractEventName returns the user-defined event name.
func (SettlementOperatorSettled) ContractEventName() string {
	return SettlementOperatorSettledEventName
}

// UnpackOperatorSettledEvent is the Go binding that unpacks the event data emitted
// by contract.
//
// Solidity: event OperatorSettled(uint64 indexed batchId, bytes32 indexed operator, int256 net, int256 balance)
func (settlement *Settlement) UnpackOperatorSettledEvent(log *types.Log) (*SettlementOperatorSettled, error) {
	event := "OperatorSettled"
	if len(log.Topics) == 0 {
		return nil, bind.ErrNoEventSignature
	}
	if log.Topics[0] != settlement.abi.Events[event].ID {
		return nil, bind.ErrEventSignatureMismatch
	}
	out := new(SettlementOperatorSettled)
	if len(log.Data) > 0 {
		if err := settlement.abi.UnpackIntoInterface(out, event, log.Data); err != nil {
			return nil, err
		}
	}
	var indexed abi.Arguments
	for _, arg := range settlement.abi.Events[event].Inputs {
		if arg.Indexed {
			indexed = append(indexed, arg)
		}
	}
	if err := abi.ParseTopics(out, indexed, log.Topics[1:]); err != nil {
		return nil, err
	}
	out.Raw = log
	return out, nil
}

// SettlementTerminalRegistered represents a TerminalRegistered event raised by the Settlement contract.
type SettlementTerminalRegistered struct {
	TerminalIdHash [32]byte
	Operator       [32]byte
	TerminalId     string
	StopId         string
	PublicKey      [32]byte
	KeyProof       []byte
	Raw            *types.Log // Blockchain specific contextual infos
}

const SettlementTerminalRegisteredEventName = "TerminalRegistered"

// ContractEventName returns the user-defined event name.
func (SettlementTerminalRegistered) ContractEventName() string {
	return SettlementTerminalRegisteredEventName
}

// UnpackTerminalRegisteredEvent is the Go binding that unpacks the event data emitted
// by contract.
//
// Solidity: event TerminalRegistered(bytes32 indexed terminalIdHash, bytes32 indexed operator, string terminalId, string stopId, bytes32 publicKey, bytes keyProof)
func (settlement *Settlement) UnpackTerminalRegisteredEvent(log *types.Log) (*SettlementTerminalRegistered, error) {
	event := "TerminalRegistered"
	if len(log.Topics) == 0 {
		return nil, bind.ErrNoEventSignature
	}
	if log.Topics[0] != settlement.abi.Events[event].ID {
		return nil, bind.ErrEventSignatureMismatch
	}
	out := new(SettlementTerminalRegistered)
	if len(log.Data) > 0 {
		if err := settlement.abi.UnpackIntoInterface(out, event, log.Data); err != nil {
			return nil, err
		}
	}
	var indexed abi.Arguments
	for _, arg := range settlement.abi.Events[event].Inputs {
		if arg.Indexed {
			indexed = append(indexed, arg)
		}
	}
	if err := abi.ParseTopics(out, indexed, log.Topics[1:]); err != nil {
		return nil, err
	}
	out.Raw = log
	return out, nil
}

// SettlementTerminalRevoked represents a TerminalRevoked event raised by the Settlement contract.
type SettlementTerminalRevoked struct {
	TerminalIdHash [32]byte
	Operator       [32]byte
	TerminalId     string
	Raw            *types.Log // Blockchain specific contextual infos
}

const SettlementTerminalRevokedEventName = "TerminalRevoked"

// ContractEventName returns the user-defined event name.
func (SettlementTerminalRevoked) ContractEventName() string {
	return SettlementTerminalRevokedEventName
}

// UnpackTerminalRevokedEvent is the Go binding that unpacks the event data emitted
// by contract.
//
// Solidity: event TerminalRevoked(bytes32 indexed terminalIdHash, bytes32 indexed operator, string terminalId)
func (settlement *Settlement) UnpackTerminalRevokedEvent(log *types.Log) (*SettlementTerminalRevoked, error) {
	event := "TerminalRevoked"
	if len(log.Topics) == 0 {
		return nil, bind.ErrNoEventSignature
	}
	if log.Topics[0] != settlement.abi.Events[event].ID {
		return nil, bind.ErrEventSignatureMismatch
	}
	out := new(SettlementTerminalRevoked)
	if len(log.Data) > 0 {
		if err := settlement.abi.UnpackIntoInterface(out, event, log.Data); err != nil {
			return nil, err
		}
	}
	var indexed abi.Arguments
	for _, arg := range settlement.abi.Events[event].Inputs {
		if arg.Indexed {
			indexed = append(indexed, arg)
		}
	}
	if err := abi.ParseTopics(out, indexed, log.Topics[1:]); err != nil {
		return nil, err
	}
	out.Raw = log
	return out, nil
}

// UnpackError attempts to decode the provided error data using user-defined
// error definitions.
func (settlement *Settlement) UnpackError(raw []byte) (any, error) {
	if bytes.Equal(raw[:4], settlement.abi.Errors["AlreadyAnswered"].ID.Bytes()[:4]) {
		return settlement.UnpackAlreadyAnsweredError(raw[4:])
	}
	if bytes.Equal(raw[:4], settlement.abi.Errors["BalanceOverflow"].ID.Bytes()[:4]) {
		return settlement.UnpackBalanceOverflowError(raw[4:])
	}
	if bytes.Equal(raw[:4], settlement.abi.Errors["BatchExists"].ID.Bytes()[:4]) {
		return settlement.UnpackBatchExistsError(raw[4:])
	}
	if bytes.Equal(raw[:4], settlement.abi.Errors["BatchOutOfOrder"].ID.Bytes()[:4]) {
		return settlement.UnpackBatchOutOfOrderError(raw[4:])
	}
	if bytes.Equal(raw[:4], settlement.abi.Errors["InvalidArgument"].ID.Bytes()[:4]) {
		return settlement.UnpackInvalidArgumentError(raw[4:])
	}
	if bytes.Equal(raw[:4], settlement.abi.Errors["InvalidOperatorOrder"].ID.Bytes()[:4]) {
		return settlement.UnpackInvalidOperatorOrderError(raw[4:])
	}
	if bytes.Equal(raw[:4], settlement.abi.Errors["InvalidPeriod"].ID.Bytes()[:4]) {
		return settlement.UnpackInvalidPeriodError(raw[4:])
	}
	if bytes.Equal(raw[:4], settlement.abi.Errors["LengthMismatch"].ID.Bytes()[:4]) {
		return settlement.UnpackLengthMismatchError(raw[4:])
	}
	if bytes.Equal(raw[:4], settlement.abi.Errors["NotAdmin"].ID.Bytes()[:4]) {
		return settlement.UnpackNotAdminError(raw[4:])
	}
	if bytes.Equal(raw[:4], settlement.abi.Errors["NotClearingHouse"].ID.Bytes()[:4]) {
		return settlement.UnpackNotClearingHouseError(raw[4:])
	}
	if bytes.Equal(raw[:4], settlement.abi.Errors["NotOperator"].ID.Bytes()[:4]) {
		return settlement.UnpackNotOperatorError(raw[4:])
	}
	if bytes.Equal(raw[:4], settlement.abi.Errors["NotTerminalOwner"].ID.Bytes()[:4]) {
		return settlement.UnpackNotTerminalOwnerError(raw[4:])
	}
	if bytes.Equal(raw[:4], settlement.abi.Errors["OperatorExists"].ID.Bytes()[:4]) {
		return settlement.UnpackOperatorExistsError(raw[4:])
	}
	if bytes.Equal(raw[:4], settlement.abi.Errors["TerminalAlreadyRevoked"].ID.Bytes()[:4]) {
		return settlement.UnpackTerminalAlreadyRevokedError(raw[4:])
	}
	if bytes.Equal(raw[:4], settlement.abi.Errors["TerminalExists"].ID.Bytes()[:4]) {
		return settlement.UnpackTerminalExistsError(raw[4:])
	}
	if bytes.Equal(raw[:4], settlement.abi.Errors["UnknownBatch"].ID.Bytes()[:4]) {
		return settlement.UnpackUnknownBatchError(raw[4:])
	}
	if bytes.Equal(raw[:4], settlement.abi.Errors["UnknownOperator"].ID.Bytes()[:4]) {
		return settlement.UnpackUnknownOperatorError(raw[4:])
	}
	if bytes.Equal(raw[:4], settlement.abi.Errors["UnknownTerminal"].ID.Bytes()[:4]) {
		return settlement.UnpackUnknownTerminalError(raw[4:])
	}
	return nil, errors.New("Unknown error")
}

// SettlementAlreadyAnswered represents a AlreadyAnswered error raised by the Settlement contract.
type SettlementAlreadyAnswered struct {
	BatchId  uint64
	Operator [32]byte
}

// ErrorID returns the hash of canonical representation of the error's signature.
//
// Solidity: error AlreadyAnswered(uint64 batchId, bytes32 operator)
func SettlementAlreadyAnsweredErrorID() common.Hash {
	return common.HexToHash("0x5f7bcaf597bf26ef2ca5c4fa9773023f6d9d16d5c9b059299ffc7cacba21d05e")
}

// UnpackAlreadyAnsweredError is the Go binding used to decode the provided
// error data into the corresponding Go error struct.
//
// Solidity: error AlreadyAnswered(uint64 batchId, bytes32 operator)
func (settlement *Settlement) UnpackAlreadyAnsweredError(raw []byte) (*SettlementAlreadyAnswered, error) {
	out := new(SettlementAlreadyAnswered)
	if err := settlement.abi.UnpackIntoInterface(out, "AlreadyAnswered", raw); err != nil {
		return nil, err
	}
	return out, nil
}

// SettlementBalanceOverflow represents a BalanceOverflow error raised by the Settlement contract.
type SettlementBalanceOverflow struct {
	Operator [32]byte
}

// ErrorID returns the hash of canonical representation of the error's signature.
//
// Solidity: error BalanceOverflow(bytes32 operator)
func SettlementBalanceOverflowErrorID() common.Hash {
	return common.HexToHash("0x3ca96f1b214bfbd262f02dc1f11d0b1c46a2d09d38ad316182f57c929a8ecbd6")
}

// UnpackBalanceOverflowError is the Go binding used to decode the provided
// error data into the corresponding Go error struct.
//
// Solidity: error BalanceOverflow(bytes32 operator)
func (settlement *Settlement) UnpackBalanceOverflowError(raw []byte) (*SettlementBalanceOverflow, error) {
	out := new(SettlementBalanceOverflow)
	if err := settlement.abi.UnpackIntoInterface(out, "BalanceOverflow", raw); err != nil {
		return nil, err
	}
	return out, nil
}

// SettlementBatchExists represents a BatchExists error raised by the Settlement contract.
type SettlementBatchExists struct {
	Id uint64
}

// ErrorID returns the hash of canonical representation of the error's signature.
//
// Solidity: error BatchExists(uint64 id)
func SettlementBatchExistsErrorID() common.Hash {
	return common.HexToHash("0x5f847b77a74cccf2fd0485b3ef7ff8cff1923a0b42dda66e7f8b7b85a8ccbc0c")
}

// UnpackBatchExistsError is the Go binding used to decode the provided
// error data into the corresponding Go error struct.
//
// Solidity: error BatchExists(uint64 id)
func (settlement *Settlement) UnpackBatchExistsError(raw []byte) (*SettlementBatchExists, error) {
	out := new(SettlementBatchExists)
	if err := settlement.abi.UnpackIntoInterface(out, "BatchExists", raw); err != nil {
		return nil, err
	}
	return out, nil
}

// SettlementBatchOutOfOrder represents a BatchOutOfOrder error raised by the Settlement contract.
type SettlementBatchOutOfOrder struct {
	Expected uint64
	Got      uint64
}

// ErrorID returns the hash of canonical representation of the error's signature.
//
// Solidity: error BatchOutOfOrder(uint64 expected, uint64 got)
func SettlementBatchOutOfOrderErrorID() common.Hash {
	return common.HexToHash("0x3feeeffcab9259368baa92694662c34cef29f165387e3442fa6730f78128b3dc")
}

// UnpackBatchOutOfOrderError is the Go binding used to decode the provided
// error data into the corresponding Go error struct.
//
// Solidity: error BatchOutOfOrder(uint64 expected, uint64 got)
func (settlement *Settlement) UnpackBatchOutOfOrderError(raw []byte) (*SettlementBatchOutOfOrder, error) {
	out := new(SettlementBatchOutOfOrder)
	if err := settlement.abi.UnpackIntoInterface(out, "BatchOutOfOrder", raw); err != nil {
		return nil, err
	}
	return out, nil
}

// SettlementInvalidArgument represents a InvalidArgument error raised by the Settlement contract.
type SettlementInvalidArgument struct {
	What string
}

// ErrorID returns the hash of canonical representation of the error's signature.
//
// Solidity: error InvalidArgument(string what)
func SettlementInvalidArgumentErrorID() common.Hash {
	return common.HexToHash("0x7ffc6ceca5b2fbb1fad9bc74dbe1afabbb9002b9113a7d1c52f4e2830c38a0dd")
}

// UnpackInvalidArgumentError is the Go binding used to decode the provided
// error data into the corresponding Go error struct.
//
// Solidity: error InvalidArgument(string what)
func (settlement *Settlement) UnpackInvalidArgumentError(raw []byte) (*SettlementInvalidArgument, error) {
	out := new(SettlementInvalidArgument)
	if err := settlement.abi.UnpackIntoInterface(out, "InvalidArgument", raw); err != nil {
		return nil, err
	}
	return out, nil
}

// SettlementInvalidOperatorOrder represents a InvalidOperatorOrder error raised by the Settlement contract.
type SettlementInvalidOperatorOrder struct {
	Index *big.Int
}

// ErrorID returns the hash of canonical representation of the error's signature.
//
// Solidity: error InvalidOperatorOrder(uint256 index)
func SettlementInvalidOperatorOrderErrorID() common.Hash {
	return common.HexToHash("0xd7a018373493a574df18ecc45f36217ebdf42cfd392a6502ab5faff913e803ab")
}

// UnpackInvalidOperatorOrderError is the Go binding used to decode the provided
// error data into the corresponding Go error struct.
//
// Solidity: error InvalidOperatorOrder(uint256 index)
func (settlement *Settlement) UnpackInvalidOperatorOrderError(raw []byte) (*SettlementInvalidOperatorOrder, error) {
	out := new(SettlementInvalidOperatorOrder)
	if err := settlement.abi.UnpackIntoInterface(out, "InvalidOperatorOrder", raw); err != nil {
		return nil, err
	}
	return out, nil
}

// SettlementInvalidPeriod represents a InvalidPeriod error raised by the Settlement contract.
type SettlementInvalidPeriod struct {
	PeriodStart uint64
	PeriodEnd   uint64
}

// ErrorID returns the hash of canonical representation of the error's signature.
//
// Solidity: error InvalidPeriod(uint64 periodStart, uint64 periodEnd)
func SettlementInvalidPeriodErrorID() common.Hash {
	return common.HexToHash("0x7c332d7e82193481a3b1e2ae548350c71c98bc1a8eb7c92aa9f4818f4e6aab20")
}

// UnpackInvalidPeriodError is the Go binding used to decode the provided
// error data into the corresponding Go error struct.
//
// Solidity: error InvalidPeriod(uint64 periodStart, uint64 periodEnd)
func (settlement *Settlement) UnpackInvalidPeriodError(raw []byte) (*SettlementInvalidPeriod, error) {
	out := new(SettlementInvalidPeriod)
	if err := settlement.abi.UnpackIntoInterface(out, "InvalidPeriod", raw); err != nil {
		return nil, err
	}
	return out, nil
}

// SettlementLengthMismatch represents a LengthMismatch error raised by the Settlement contract.
type SettlementLengthMismatch struct {
	A *big.Int
	B *big.Int
}

// ErrorID returns the hash of canonical representation of the error's signature.
//
// Solidity: error LengthMismatch(uint256 a, uint256 b)
func SettlementLengthMismatchErrorID() common.Hash {
	return common.HexToHash("0xab8b67c6893c59617ef3ba4b4b942e9791f2572db2fdb32028356532f3b7396a")
}

// UnpackLengthMismatchError is the Go binding used to decode the provided
// error data into the corresponding Go error struct.
//
// Solidity: error LengthMismatch(uint256 a, uint256 b)
func (settlement *Settlement) UnpackLengthMismatchError(raw []byte) (*SettlementLengthMismatch, error) {
	out := new(SettlementLengthMismatch)
	if err := settlement.abi.UnpackIntoInterface(out, "LengthMismatch", raw); err != nil {
		return nil, err
	}
	return out, nil
}

// SettlementNotAdmin represents a NotAdmin error raised by the Settlement contract.
type SettlementNotAdmin struct {
	Caller common.Address
}

// ErrorID returns the hash of canonical representation of the error's signature.
//
// Solidity: error NotAdmin(address caller)
func SettlementNotAdminErrorID() common.Hash {
	return common.HexToHash("0x17a8424239494df835a470bd5e48f10a94b5febfef662a1917fe31decebbedeb")
}

// UnpackNotAdminError is the Go binding used to decode the provided
// error data into the corresponding Go error struct.
//
// Solidity: error NotAdmin(address caller)
func (settlement *Settlement) UnpackNotAdminError(raw []byte) (*SettlementNotAdmin, error) {
	out := new(SettlementNotAdmin)
	if err := settlement.abi.UnpackIntoInterface(out, "NotAdmin", raw); err != nil {
		return nil, err
	}
	return out, nil
}

// SettlementNotClearingHouse represents a NotClearingHouse error raised by the Settlement contract.
type SettlementNotClearingHouse struct {
	Caller common.Address
}

// ErrorID returns the hash of canonical representation of the error's signature.
//
// Solidity: error NotClearingHouse(address caller)
func SettlementNotClearingHouseErrorID() common.Hash {
	return common.HexToHash("0xd7378be9e6efaa5ee1a1e859633e29edc0103dc71fc189c97f3fe519691d1fc8")
}

// UnpackNotClearingHouseError is the Go binding used to decode the provided
// error data into the corresponding Go error struct.
//
// Solidity: error NotClearingHouse(address caller)
func (settlement *Settlement) UnpackNotClearingHouseError(raw []byte) (*SettlementNotClearingHouse, error) {
	out := new(SettlementNotClearingHouse)
	if err := settlement.abi.UnpackIntoInterface(out, "NotClearingHouse", raw); err != nil {
		return nil, err
	}
	return out, nil
}

// SettlementNotOperator represents a NotOperator error raised by the Settlement contract.
type SettlementNotOperator struct {
	Caller common.Address
}

// ErrorID returns the hash of canonical representation of the error's signature.
//
// Solidity: error NotOperator(address caller)
func SettlementNotOperatorErrorID() common.Hash {
	return common.HexToHash("0x76c6c93a6423c7e2cef5f93921b1d4d1a5ffb795cd7cfed2df95566b7c7f7c40")
}

// UnpackNotOperatorError is the Go binding used to decode the provided
// error data into the corresponding Go error struct.
//
// Solidity: error NotOperator(address caller)
func (settlement *Settlement) UnpackNotOperatorError(raw []byte) (*SettlementNotOperator, error) {
	out := new(SettlementNotOperator)
	if err := settlement.abi.UnpackIntoInterface(out, "NotOperator", raw); err != nil {
		return nil, err
	}
	return out, nil
}

// SettlementNotTerminalOwner represents a NotTerminalOwner error raised by the Settlement contract.
type SettlementNotTerminalOwner struct {
	TerminalIdHash [32]byte
	Owner          [32]byte
	Caller         [32]byte
}

// ErrorID returns the hash of canonical representation of the error's signature.
//
// Solidity: error NotTerminalOwner(bytes32 terminalIdHash, bytes32 owner, bytes32 caller)
func SettlementNotTerminalOwnerErrorID() common.Hash {
	return common.HexToHash("0xd498d3458d1c79ceb72ec9c6fa5267898c80f9b290030f81a0723a754b07b290")
}

// UnpackNotTerminalOwnerError is the Go binding used to decode the provided
// error data into the corresponding Go error struct.
//
// Solidity: error NotTerminalOwner(bytes32 terminalIdHash, bytes32 owner, bytes32 caller)
func (settlement *Settlement) UnpackNotTerminalOwnerError(raw []byte) (*SettlementNotTerminalOwner, error) {
	out := new(SettlementNotTerminalOwner)
	if err := settlement.abi.UnpackIntoInterface(out, "NotTerminalOwner", raw); err != nil {
		return nil, err
	}
	return out, nil
}

// SettlementOperatorExists represents a OperatorExists error raised by the Settlement contract.
type SettlementOperatorExists struct {
	Operator [32]byte
	Account  common.Address
}

// ErrorID returns the hash of canonical representation of the error's signature.
//
// Solidity: error OperatorExists(bytes32 operator, address account)
func SettlementOperatorExistsErrorID() common.Hash {
	return common.HexToHash("0x1501267a56c003b1bac47e24948a9c21e8b641ed4cd5184a8062b3c3735343b7")
}

// UnpackOperatorExistsError is the Go binding used to decode the provided
// error data into the corresponding Go error struct.
//
// Solidity: error OperatorExists(bytes32 operator, address account)
func (settlement *Settlement) UnpackOperatorExistsError(raw []byte) (*SettlementOperatorExists, error) {
	out := new(SettlementOperatorExists)
	if err := settlement.abi.UnpackIntoInterface(out, "OperatorExists", raw); err != nil {
		return nil, err
	}
	return out, nil
}

// SettlementTerminalAlreadyRevoked represents a TerminalAlreadyRevoked error raised by the Settlement contract.
type SettlementTerminalAlreadyRevoked struct {
	Id string
}

// ErrorID returns the hash of canonical representation of the error's signature.
//
// Solidity: error TerminalAlreadyRevoked(string id)
func SettlementTerminalAlreadyRevokedErrorID() common.Hash {
	return common.HexToHash("0xfeb3e7407be09fa3a4f30cf90f0572f3c82492e1521104255581bbb38cec44db")
}

// UnpackTerminalAlreadyRevokedError is the Go binding used to decode the provided
// error data into the corresponding Go error struct.
//
// Solidity: error TerminalAlreadyRevoked(string id)
func (settlement *Settlement) UnpackTerminalAlreadyRevokedError(raw []byte) (*SettlementTerminalAlreadyRevoked, error) {
	out := new(SettlementTerminalAlreadyRevoked)
	if err := settlement.abi.UnpackIntoInterface(out, "TerminalAlreadyRevoked", raw); err != nil {
		return nil, err
	}
	return out, nil
}

// SettlementTerminalExists represents a TerminalExists error raised by the Settlement contract.
type SettlementTerminalExists struct {
	Id string
}

// ErrorID returns the hash of canonical representation of the error's signature.
//
// Solidity: error TerminalExists(string id)
func SettlementTerminalExistsErrorID() common.Hash {
	return common.HexToHash("0x4fa6f48033c9ec1d15155e88a1a47c831f04b4cf5c1ed8ae52252faa7d5989ac")
}

// UnpackTerminalExistsError is the Go binding used to decode the provided
// error data into the corresponding Go error struct.
//
// Solidity: error TerminalExists(string id)
func (settlement *Settlement) UnpackTerminalExistsError(raw []byte) (*SettlementTerminalExists, error) {
	out := new(SettlementTerminalExists)
	if err := settlement.abi.UnpackIntoInterface(out, "TerminalExists", raw); err != nil {
		return nil, err
	}
	return out, nil
}

// SettlementUnknownBatch represents a UnknownBatch error raised by the Settlement contract.
type SettlementUnknownBatch struct {
	Id uint64
}

// ErrorID returns the hash of canonical representation of the error's signature.
//
// Solidity: error UnknownBatch(uint64 id)
func SettlementUnknownBatchErrorID() common.Hash {
	return common.HexToHash("0x29323ffff0d2ae0465a5a02be95b40fbdb0fc0656d05f820f3904c4580a7b0c1")
}

// UnpackUnknownBatchError is the Go binding used to decode the provided
// error data into the corresponding Go error struct.
//
// Solidity: error UnknownBatch(uint64 id)
func (settlement *Settlement) UnpackUnknownBatchError(raw []byte) (*SettlementUnknownBatch, error) {
	out := new(SettlementUnknownBatch)
	if err := settlement.abi.UnpackIntoInterface(out, "UnknownBatch", raw); err != nil {
		return nil, err
	}
	return out, nil
}

// SettlementUnknownOperator represents a UnknownOperator error raised by the Settlement contract.
type SettlementUnknownOperator struct {
	Operator [32]byte
}

// ErrorID returns the hash of canonical representation of the error's signature.
//
// Solidity: error UnknownOperator(bytes32 operator)
func SettlementUnknownOperatorErrorID() common.Hash {
	return common.HexToHash("0xd5f0d0bad06adca1418448c3e703c60dc105eaf6d567bae6fa18510981ca23a7")
}

// UnpackUnknownOperatorError is the Go binding used to decode the provided
// error data into the corresponding Go error struct.
//
// Solidity: error UnknownOperator(bytes32 operator)
func (settlement *Settlement) UnpackUnknownOperatorError(raw []byte) (*SettlementUnknownOperator, error) {
	out := new(SettlementUnknownOperator)
	if err := settlement.abi.UnpackIntoInterface(out, "UnknownOperator", raw); err != nil {
		return nil, err
	}
	return out, nil
}

// SettlementUnknownTerminal represents a UnknownTerminal error raised by the Settlement contract.
type SettlementUnknownTerminal struct {
	Id string
}

// ErrorID returns the hash of canonical representation of the error's signature.
//
// Solidity: error UnknownTerminal(string id)
func SettlementUnknownTerminalErrorID() common.Hash {
	return common.HexToHash("0xc677e43e8b60699e889a75f22899af43ae12e0b41ff3090fb55be195bd63f181")
}

// UnpackUnknownTerminalError is the Go binding used to decode the provided
// error data into the corresponding Go error struct.
//
// Solidity: error UnknownTerminal(string id)
func (settlement *Settlement) UnpackUnknownTerminalError(raw []byte) (*SettlementUnknownTerminal, error) {
	out := new(SettlementUnknownTerminal)
	if err := settlement.abi.UnpackIntoInterface(out, "UnknownTerminal", raw); err != nil {
		return nil, err
	}
	return out, nil
}
